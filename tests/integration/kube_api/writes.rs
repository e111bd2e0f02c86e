//! Writes as the API server takes them: server-side apply with field managers, merge patches, create and replace with optimistic concurrency.

use super::*;

/// A write that names a `resourceVersion` other than the object's is refused (optimistic
/// concurrency), as the API server does.
pub(super) fn stale(existing: &Value, sent: &Value, path: &str) -> Option<Response> {
    let sent = sent["metadata"]["resourceVersion"].as_str()?;
    (existing["metadata"]["resourceVersion"].as_str() != Some(sent)).then(|| {
        status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(path)
            ),
        )
    })
}

/// Stores a written object, after what the API server and the controllers do to it.
pub(super) fn store_written(
    store: &mut Store,
    path: &str,
    mut object: Value,
    code: StatusCode,
) -> Response {
    controllers(&mut object);
    instance(store, path, &mut object);
    disks(store, path, &object);
    store.insert(path, object);
    let stored = store.objects.get(path).cloned().unwrap_or_default();
    (code, Json(stored)).into_response()
}

/// An update by `manager` (create, replace, merge patch) owns the fields it set to a new value;
/// the managers that owned them before lose them, and fields no longer there are nobody's.
pub(super) fn take_fields(
    store: &mut Store,
    path: &str,
    manager: &str,
    before: &Value,
    after: &Value,
) {
    let mut now = Vec::new();
    leaves(&[], after, &mut now);
    let changed: Vec<Vec<String>> = now
        .iter()
        .filter(|f| at(before, f) != at(after, f))
        .cloned()
        .collect();
    for ((p, _), owned) in store.managed.iter_mut().filter(|((p, _), _)| p == path) {
        let _ = p;
        owned.retain(|f| now.contains(f) && !changed.contains(f));
    }
    let mine = store
        .managed
        .entry((path.to_string(), manager.to_string()))
        .or_default();
    for field in changed {
        if !mine.contains(&field) {
            mine.push(field);
        }
    }
}

/// Server-side apply: the object is merged into what is there; the fields this manager set
/// last time and sets no more are removed; a field another manager owns and this apply would
/// change is a 409 conflict, unless forced, which takes it over.
pub(super) fn apply(
    store: &mut Store,
    path: &str,
    name: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let Some(manager) = query.get("fieldManager").cloned() else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "fieldManager is required for apply patch".into(),
        );
    };
    let mut applied = match parse(body) {
        Ok(applied) => applied,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    if applied["metadata"]["name"].as_str() != Some(name) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("metadata.name must be {name}"),
        );
    }
    let force = query.get("force").map(String::as_str) == Some("true");
    let existing = store.objects.get(path).cloned();
    let mut fields = Vec::new();
    leaves(&[], &applied, &mut fields);
    let merged = match &existing {
        Some(existing) => {
            if let Some(refused) = stale(existing, &applied, path) {
                return refused;
            }
            let conflicts: Vec<(String, Vec<String>)> = store
                .managed
                .iter()
                .filter(|((p, other), _)| p == path && *other != manager)
                .flat_map(|((_, other), owned)| owned.iter().map(move |f| (other.clone(), f)))
                .filter(|(_, f)| fields.contains(f) && at(existing, f) != at(&applied, f))
                .map(|(other, f)| (other, f.clone()))
                .collect();
            if !conflicts.is_empty() && !force {
                let named: Vec<String> = conflicts
                    .iter()
                    .map(|(other, f)| format!("conflict with \"{other}\": .{}", f.join(".")))
                    .collect();
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflict{}: {}",
                        conflicts.len(),
                        if conflicts.len() == 1 { "" } else { "s" },
                        named.join("; ")
                    ),
                );
            }
            for ((p, other), owned) in store.managed.iter_mut() {
                if p == path && *other != manager {
                    owned.retain(|f| !conflicts.iter().any(|(_, c)| c == f));
                }
            }
            // Fields this manager set before and sets no more are removed, unless another
            // manager owns them too; the rest of what the object holds stays.
            let mut kept = existing.clone();
            let before = store
                .managed
                .get(&(path.to_string(), manager.clone()))
                .cloned()
                .unwrap_or_default();
            for gone in before.iter().filter(|f| !fields.contains(f)) {
                let shared = store.managed.iter().any(|((p, other), owned)| {
                    p == path && *other != manager && owned.contains(gone)
                });
                if !shared {
                    remove(&mut kept, gone);
                }
            }
            merge(&mut kept, &applied);
            kept
        }
        None => {
            applied["metadata"]["uid"] = format!("uid-{}", store.version + 1).into();
            applied["metadata"]["creationTimestamp"] = "2026-11-24T00:00:00Z".into();
            applied
        }
    };
    store.managed.insert((path.to_string(), manager), fields);
    let code = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    store_written(store, path, merged, code)
}

/// A JSON merge patch (RFC 7386), as `kubectl patch --type merge` or `kubectl edit` send.
pub(super) fn merge_patch(
    store: &mut Store,
    path: &str,
    name: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let patch = match parse(body) {
        Ok(patch) => patch,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    let Some(existing) = store.objects.get(path).cloned() else {
        return not_found(name);
    };
    if let Some(refused) = stale(&existing, &patch, path) {
        return refused;
    }
    let mut patched = existing.clone();
    merge_patch_into(&mut patched, &patch);
    if let Some(map) = patched["metadata"].as_object_mut() {
        map.remove("resourceVersion");
    }
    let manager = query.get("fieldManager").map_or("unknown", String::as_str);
    take_fields(store, path, manager, &existing, &patched);
    store_written(store, path, patched, StatusCode::OK)
}

/// `POST` to a collection: the object is made, or 409 if one of its name is there.
pub(super) fn create(
    store: &mut Store,
    collection: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let mut object = match parse(body) {
        Ok(object) => object,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value: name or generateName is required".into(),
        );
    };
    let path = format!("{collection}/{name}");
    if store.objects.contains_key(&path) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} already exists", qualified(&path)),
        );
    }
    object["metadata"]["uid"] = format!("uid-{}", store.version + 1).into();
    object["metadata"]["creationTimestamp"] = "2026-11-24T00:00:00Z".into();
    let manager = query.get("fieldManager").map_or("unknown", String::as_str);
    take_fields(store, &path, manager, &Value::Null, &object);
    store_written(store, &path, object, StatusCode::CREATED)
}

/// `PUT`: the whole object replaced; with a `resourceVersion` that is not the object's, 409.
pub(super) fn replace(
    store: &mut Store,
    path: &str,
    name: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let mut object = match parse(body) {
        Ok(object) => object,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    let Some(existing) = store.objects.get(path).cloned() else {
        return not_found(name);
    };
    if let Some(refused) = stale(&existing, &object, path) {
        return refused;
    }
    // The server keeps what a client cannot replace: identity, and status (a subresource).
    for key in ["uid", "creationTimestamp"] {
        object["metadata"][key] = existing["metadata"][key].clone();
    }
    if !existing["status"].is_null() {
        object["status"] = existing["status"].clone();
    }
    let manager = query.get("fieldManager").map_or("unknown", String::as_str);
    take_fields(store, path, manager, &existing, &object);
    store_written(store, path, object, StatusCode::OK)
}
