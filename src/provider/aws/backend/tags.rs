//! Ownership marks as EC2 tags. EC2 has no other place for them: a resource carries at most 50
//! tags of at most 256 characters each, so the mark (the spec it was made from, the guard, the
//! file it was applied from) is kept as JSON cut into numbered tags, beside a few plain ones to
//! find resources by: `Name` (the plan's name for it), `siteplan:plan`, and kcli's `plan`.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use serde::{Deserialize, Serialize};

use crate::plan::model::spec::Spec;
use crate::plan::model::OwnerMark;
use crate::provider::lock::rfc3339;
use crate::provider::Owner;

pub const NAME: &str = "Name";
pub const PLAN: &str = "siteplan:plan";
/// kcli's own mark, so that `kcli list plan` sees siteplan's plans and `plan list` kcli's.
pub const KCLI_PLAN: &str = "plan";
/// The mark's JSON, in pieces: `siteplan:mark-0`, `siteplan:mark-1`, …
const MARK_PREFIX: &str = "siteplan:mark-";
/// An instance's AMI by id, as its `image` (a name, perhaps) resolved when it was made.
pub const IMAGE_ID: &str = "siteplan:image-id";
/// An instance type saved for a running instance, made when it restarts.
pub const PENDING_TYPE: &str = "siteplan:pending-instance-type";
/// The instance a volume is a disk of, and the disk's name in the plan.
pub const DISK_OF: &str = "siteplan:disk-of";

/// How much of the mark one tag holds (tag values are at most 256 characters).
const PIECE: usize = 250;
/// The most pieces a mark may take, leaving tags for the plain ones and the user's.
const MAX_PIECES: usize = 40;

pub type Tags = BTreeMap<String, String>;

/// What a mark holds besides the plan's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mark {
    spec: Spec,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    prevent_destroy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

/// The tags that mark `spec` as made by `owner`, keeping the time it was first made.
pub fn mark(
    spec: &Spec,
    owner: &Owner,
    name: &str,
    created: Option<String>,
) -> Result<Tags, String> {
    let mark = Mark {
        spec: spec.clone(),
        prevent_destroy: owner.prevent_destroy,
        created: Some(created.unwrap_or_else(|| rfc3339(std::time::SystemTime::now()))),
        applied_from: owner.applied_from.clone(),
        group: owner.group.clone(),
    };
    let json = serde_json::to_string(&mark).map_err(|e| e.to_string())?;
    let mut tags = Tags::new();
    tags.insert(NAME.into(), name.into());
    tags.insert(PLAN.into(), owner.plan.clone());
    tags.insert(KCLI_PLAN.into(), owner.plan.clone());
    let pieces = pieces(MARK_PREFIX, &json);
    if pieces.len() > MAX_PIECES {
        return Err(format!(
            "its mark is {} characters, more than EC2's tags hold ({})",
            json.len(),
            PIECE * MAX_PIECES
        ));
    }
    tags.extend(pieces);
    Ok(tags)
}

/// `text` cut into tags `PREFIX0`, `PREFIX1`, … short enough for a tag's value.
pub fn pieces(prefix: &str, text: &str) -> Tags {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(PIECE)
        .enumerate()
        .map(|(i, piece)| (format!("{prefix}{i}"), piece.iter().collect()))
        .collect()
}

/// The text `pieces` cut into the tags `PREFIX0`, `PREFIX1`, …, joined again.
pub fn joined(tags: &Tags, prefix: &str) -> String {
    (0..)
        .map_while(|i| tags.get(&format!("{prefix}{i}")))
        .map(String::as_str)
        .collect()
}

/// The mark `tags` hold, if they hold one that reads.
pub fn owner_mark(tags: &Tags) -> Option<OwnerMark> {
    let plan = tags.get(PLAN)?;
    let mark: Mark = serde_json::from_str(&joined(tags, MARK_PREFIX)).ok()?;
    Some(OwnerMark {
        plan: plan.clone(),
        spec: mark.spec,
        prevent_destroy: mark.prevent_destroy,
        created: mark.created,
        applied_from: mark.applied_from,
        group: mark.group,
    })
}

/// The mark's pieces `tags` have beyond those of `new`: stale after a shorter mark is written.
pub fn stale_pieces(tags: &Tags, new: &Tags) -> Vec<String> {
    tags.keys()
        .filter(|k| k.starts_with(MARK_PREFIX) && !new.contains_key(*k))
        .cloned()
        .collect()
}

pub fn of(tags: Option<&[Tag]>) -> Tags {
    tags.unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

pub fn list(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Tags for a resource made with them (EC2 tags it as it makes it, so a run killed right after
/// leaves it marked).
pub fn on_create(kind: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(list(tags)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::spec::ObjectSpec;

    #[test]
    fn a_long_mark_reads_back_from_its_pieces() {
        let spec = Spec::Object(ObjectSpec {
            object: crate::provider::aws::kinds::INSTANCE,
            name: "web1".into(),
            fields: [(
                "image".to_string(),
                serde_json::Value::from("x".repeat(900)),
            )]
            .into_iter()
            .collect(),
            secret_data: Default::default(),
        });
        let mut owner = Owner::plan("lab");
        owner.prevent_destroy = true;
        owner.applied_from = Some("/srv/lab/site.yml".into());
        let tags = mark(&spec, &owner, "web1", None).unwrap();
        assert!(tags.values().all(|v| v.chars().count() <= 256));
        assert!(tags.len() > 5);
        let back = owner_mark(&tags).unwrap();
        assert_eq!(back.spec, spec);
        assert_eq!(back.plan, "lab");
        assert!(back.prevent_destroy);
        assert_eq!(back.applied_from.as_deref(), Some("/srv/lab/site.yml"));
        assert_eq!(tags[KCLI_PLAN], "lab");
        let short = mark(
            &Spec::Object(ObjectSpec {
                fields: Default::default(),
                ..match spec {
                    Spec::Object(o) => o,
                    _ => unreachable!(),
                }
            }),
            &owner,
            "web1",
            None,
        )
        .unwrap();
        assert!(!stale_pieces(&tags, &short).is_empty());
    }
}
