//! `plan provider list|get`: the configured providers with their live health, as DCM's CLI
//! shows its providers (same columns, fields and paging).

use std::process::ExitCode;

use super::out::{self, say};
use crate::registry::{self, config, ProviderView};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

const EXIT_ERROR: u8 = 1;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    say!("error: {message}");
    ExitCode::from(EXIT_ERROR)
}

/// Every provider, checked.
fn all_views() -> Result<Vec<ProviderView>, String> {
    let (file, _) = config::load()?;
    let timeout = file
        .health_timeout
        .map_or(registry::HEALTH_TIMEOUT, std::time::Duration::from_secs);
    let mut providers = file.providers.clone();
    // `plan provider list` takes no --no-kcli-config: the environment variable turns it off.
    providers.extend(registry::kcli_providers(&file.providers, false));
    let mut views = super::block_on(registry::views(&providers, timeout))
        .map_err(|_| "cannot start the runtime".to_string())??;
    for view in &mut views {
        view.groups = file
            .groups
            .iter()
            .filter(|g| g.hosts.contains(&view.name))
            .map(|g| g.name.clone())
            .collect();
    }
    Ok(views)
}

/// An opaque token for the page that starts after `last`.
fn token_after(last: &ProviderView) -> String {
    hex::encode(format!("{}|{}", last.create_time, last.id))
}

fn after_token(token: &str) -> Option<(String, String)> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let (time, id) = text.split_once('|')?;
    Some((time.to_string(), id.to_string()))
}

pub fn list(
    service_type: Option<&str>,
    page_size: usize,
    page_token: Option<&str>,
    output: Output,
) -> ExitCode {
    let views = match all_views() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let mut matching: Vec<ProviderView> = views
        .into_iter()
        .filter(|v| service_type.is_none_or(|t| v.service_type == t))
        .collect();
    if let Some(token) = page_token {
        let Some(after) = after_token(token) else {
            return fail(format!("`{token}` is not a page token this command gave"));
        };
        matching.retain(|v| (v.create_time.clone(), v.id.clone()) > after);
    }
    let more = matching.len() > page_size;
    matching.truncate(page_size);
    let next = more.then(|| matching.last().map(token_after)).flatten();
    let text = match output {
        Output::Json => {
            let doc = serde_json::json!({ "results": matching, "next_page_token": next });
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        Output::Yaml => {
            let doc = serde_json::json!({ "results": matching, "next_page_token": next });
            serde_norway::to_string(&doc).unwrap_or_default()
        }
        Output::Table => table(&matching, next.as_deref(), service_type, page_size),
    };
    let _ = out::stdout(&text);
    ExitCode::SUCCESS
}

fn table(
    views: &[ProviderView],
    next: Option<&str>,
    service_type: Option<&str>,
    page_size: usize,
) -> String {
    let mut table =
        super::table::new(&["ID", "NAME", "SERVICE TYPE", "STATUS", "HEALTH", "CREATED"]);
    for v in views {
        table.add_row(vec![
            v.id.clone(),
            v.name.clone(),
            v.service_type.clone(),
            v.status.to_uppercase(),
            v.health_status.to_uppercase(),
            // Seconds are enough in a table.
            v.create_time
                .get(..19)
                .map_or(v.create_time.clone(), |t| format!("{t}Z")),
        ]);
    }
    let mut out = super::table::text(&mut table, 3);
    // What each offers and what is taken of it: what placement on a group goes by.
    let mut room = String::new();
    for v in views {
        if let Some(line) = room_line(v) {
            room.push_str(&format!("\n{}: {line}", v.name));
        }
    }
    if !room.is_empty() {
        out.push_str(&room);
        out.push('\n');
    }
    for v in views.iter().filter(|v| v.health_reason.is_some()) {
        out.push_str(&format!(
            "\n{}: {}: {}",
            v.name,
            v.health_status,
            v.health_reason.as_deref().unwrap_or_default()
        ));
    }
    if views.iter().any(|v| v.health_reason.is_some()) {
        out.push('\n');
    }
    if let Some(token) = next {
        let type_flag = service_type
            .map(|t| format!(" --type {t}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "\nNext page: plan provider list{type_flag} --page-size {page_size} --page-token {token}\n"
        ));
    }
    out
}

/// `4 of 16 CPUs, 2.0 of 3.0 GiB allocated (group lab)`: what a provider offers and what its
/// VMs take, where it says.
fn room_line(v: &ProviderView) -> Option<String> {
    let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
    let mut parts = Vec::new();
    match (&v.capacity, &v.allocation) {
        (Some(c), Some(a)) => parts.push(format!(
            "{} of {} CPUs, {:.1} of {:.1} GiB memory allocated",
            a.cpus,
            c.cpus,
            gib(a.memory_bytes),
            gib(c.memory_bytes)
        )),
        (Some(c), None) => parts.push(format!(
            "{} CPUs, {:.1} GiB memory",
            c.cpus,
            gib(c.memory_bytes)
        )),
        _ => {}
    }
    if let Some(a) = &v.allocation {
        let pools: Vec<String> = a
            .pools_free_bytes
            .iter()
            .map(|(pool, free)| format!("{pool} {:.1} GiB free", gib(*free)))
            .collect();
        if !pools.is_empty() {
            parts.push(format!("pools: {}", pools.join(", ")));
        }
    }
    if !v.groups.is_empty() {
        parts.push(format!("group {}", v.groups.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub fn get(which: &str, output: Output) -> ExitCode {
    let views = match all_views() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let Some(view) = views.iter().find(|v| v.id == which || v.name == which) else {
        let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
        return fail(format!(
            "no provider has the id or name `{which}` (there are: {})",
            names.join(", ")
        ));
    };
    let text = match output {
        Output::Yaml => serde_norway::to_string(view).unwrap_or_default(),
        // A table of one is its fields, one per line.
        Output::Json | Output::Table => {
            format!(
                "{}\n",
                serde_json::to_string_pretty(view).unwrap_or_default()
            )
        }
    };
    let _ = out::stdout(&text);
    ExitCode::SUCCESS
}
