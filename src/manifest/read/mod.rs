//! Reads the rendered YAML tree into typed entries, applying kcli's defaults.
//!
//! Every key an entry may have is asked for through a `MapReader`; whatever is left unasked at
//! the end is either a kcli key siteplan does not implement (a warning) or a mistake (an error
//! with a suggestion). So the set of keys siteplan understands is exactly what this file reads.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::keys;
use super::model::*;
use super::yaml::{Node, Value};
use crate::diagnostics::{did_you_mean, Diagnostics, Problem, Span};
use crate::manifest::kcli::KcliConfig;

mod network;
mod reader;
mod storage;
mod vm;

use network::*;
use reader::*;
pub use reader::{parse_size, MapReader, Unit};
use storage::*;
use vm::*;

/// What `read_entries` made of the plan.
#[derive(Debug, Default)]
pub struct ReadEntries {
    pub entries: Vec<Entry>,
    /// Names of entries too broken to read (a bad type): references to them are not reported again.
    pub unreadable: Vec<String>,
}

/// Reads every entry of the plan, with `kcli`'s VM defaults and profiles under its own. Problems
/// go to `d`; entries that could not be read are left out.
pub fn read_entries(root: &Node, kcli: &KcliConfig, d: &mut Diagnostics) -> ReadEntries {
    let map = match &root.value {
        Value::Map(map) => map.as_slice(),
        Value::Null => &[],
        _ => {
            d.push(
                Problem::error(
                    "plan::not-a-map",
                    format!(
                        "a plan is a map of named entries, but this is {}",
                        root.kind_name()
                    ),
                )
                .label(root.span, "expected `name: {type: ..., ...}` entries")
                .help("write one entry per top-level key, for example `web1: {memory: 2048}`"),
            );
            return ReadEntries::default();
        }
    };

    // First pass: names and types, so that profiles can be merged into VMs in the second.
    let mut typed = Vec::new();
    let mut unreadable = Vec::new();
    for (key, value) in map {
        let Some(name) = key.key_text() else {
            d.push(
                Problem::error("plan::bad-name", "an entry name must be a plain string")
                    .label(key.span, "not a name"),
            );
            continue;
        };
        if name == "parameters" {
            continue;
        }
        let Some(kind) = entry_type(&name, key, value, d) else {
            unreadable.push(name);
            continue;
        };
        typed.push((name, key, value, kind));
    }

    let profiles: BTreeMap<&str, &Node> = typed
        .iter()
        .filter(|(_, _, _, kind)| *kind == Kind::Profile)
        .map(|(name, _, value, _)| (name.as_str(), *value))
        .collect();
    let images: Vec<&str> = typed
        .iter()
        .filter(|(_, _, _, kind)| *kind == Kind::Image)
        .map(|(name, _, _, _)| name.as_str())
        .collect();

    let read: Vec<Option<Entry>> = typed
        .iter()
        .map(|(name, key, value, kind)| {
            // What the kcli configuration gives this VM, pointing at its name: the spans of
            // another file mean nothing here.
            let outside = match kind {
                Kind::Vm => Outside::for_vm(value, &profiles, kcli, key.span),
                _ => Outside::default(),
            };
            let lookup = Lookup {
                kcli_off: kcli.off,
                profiles: &profiles,
                images: &images,
                outside: &outside,
            };
            let what = format!("{kind} `{name}`");
            let mut r = MapReader::new(value, what, key.span);
            if matches!(kind, Kind::Vm | Kind::Profile) {
                r = r.with_variables().with_older_names(keys::OLDER_VM_KEYS);
            }
            let entry_kind = match kind {
                Kind::Vm => EntryKind::Vm(Box::new(read_vm(&mut r, Some(&lookup), d))),
                Kind::Profile => {
                    if let Some(nested) = r.take("profile") {
                        d.push(
                            Problem::error(
                                "plan::nested-profile",
                                format!("profile `{name}` uses another profile"),
                            )
                            .label(nested.span, "profiles cannot use profiles")
                            .help("copy the keys you need into this profile"),
                        );
                    }
                    read_vm(&mut r, None, d);
                    EntryKind::Profile
                }
                Kind::Network => EntryKind::Network(read_network(&mut r, name, d)),
                Kind::Pool => EntryKind::Pool(read_pool(&mut r, d)),
                Kind::Image => EntryKind::Image(read_image(&mut r, d)),
                Kind::Disk => EntryKind::Disk(read_shared_disk(&mut r, d)),
                // Without an address it was reported: unreadable, as an entry of a bad type is.
                Kind::Dns => EntryKind::Dns(read_dns(&mut r, d)?),
                Kind::SecurityGroup => EntryKind::SecurityGroup(read_security_group(&mut r, d)),
            };
            let depends_on = r.refs("depends_on", d);
            let guards = Guards {
                prevent_destroy: r.bool("prevent_destroy", false, d),
                create_before_destroy: r.bool("create_before_destroy", false, d),
                ignore_changes: r.refs("ignore_changes", d),
            };
            check_ignorable(*kind, &guards.ignore_changes, d);
            r.take("type");
            r.finish(unimplemented_keys(*kind), d);
            Some(Entry {
                name: name.clone(),
                span: key.span,
                kind: entry_kind,
                depends_on,
                guards,
            })
        })
        .collect();
    let mut entries = Vec::new();
    for ((name, ..), entry) in typed.iter().zip(read) {
        match entry {
            Some(entry) => entries.push(entry),
            None => unreadable.push(name.clone()),
        }
    }
    images_for_boot_urls(&mut entries, &unreadable);
    ReadEntries {
        entries,
        unreadable,
    }
}

/// Gives each kernel or initrd a VM names by an http(s) URL an image entry of its own, which
/// fetches it into the VM's pool (one per URL and pool), and points the VM at it: named after
/// the URL's file, or after the VM and its role when that name is taken.
fn images_for_boot_urls(entries: &mut Vec<Entry>, unreadable: &[String]) {
    let mut added: Vec<Entry> = Vec::new();
    for i in 0..entries.len() {
        let EntryKind::Vm(vm) = &entries[i].kind else {
            continue;
        };
        let Some(boot) = &vm.boot else { continue };
        let pool = vm.pool.clone();
        let vm_name = entries[i].name.clone();
        let mut named = Vec::new();
        for (role, file) in [
            ("kernel", Some(&boot.kernel)),
            ("initrd", boot.initrd.as_ref()),
        ] {
            let Some(BootFile::Image(image)) = file else {
                continue;
            };
            if !image.name.contains("://") {
                continue;
            }
            let same = |e: &Entry| matches!(&e.kind, EntryKind::Image(i) if i.url.as_deref() == Some(image.name.as_str()) && i.pool.name == pool.name);
            let name = match added.iter().find(|e| same(e)) {
                Some(existing) => existing.name.clone(),
                None => {
                    let file_name: String = image
                        .name
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .split(['?', '#'])
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                        .collect();
                    let taken = |n: &str| {
                        n.is_empty()
                            || entries.iter().any(|e| e.name == n)
                            || added.iter().any(|e| e.name == n)
                            || unreadable.iter().any(|u| u == n)
                    };
                    let name = match taken(&file_name) {
                        false => file_name,
                        true => format!("{vm_name}-{role}"),
                    };
                    added.push(Entry {
                        name: name.clone(),
                        span: image.span,
                        kind: EntryKind::Image(Image {
                            url: Some(image.name.clone()),
                            pool: pool.clone(),
                            size_bytes: None,
                            sha256: None,
                        }),
                        depends_on: Vec::new(),
                        guards: Guards::default(),
                    });
                    name
                }
            };
            named.push((role, name));
        }
        let EntryKind::Vm(vm) = &mut entries[i].kind else {
            continue;
        };
        let Some(boot) = &mut vm.boot else { continue };
        for (role, name) in named {
            let file = match role {
                "kernel" => Some(&mut boot.kernel),
                _ => boot.initrd.as_mut(),
            };
            if let Some(BootFile::Image(image)) = file {
                image.name = name;
            }
        }
    }
    entries.extend(added);
}

/// Every top-level key the reader asks for in an entry of `kind` (for checking the schema).
pub fn keys_read_for(kind: Kind) -> Vec<&'static str> {
    let empty = Node {
        value: Value::Map(Vec::new()),
        span: Span::default(),
    };
    let mut d = Diagnostics::default();
    let (profiles, outside) = (BTreeMap::new(), Outside::default());
    let lookup = Lookup {
        kcli_off: false,
        profiles: &profiles,
        images: &[],
        outside: &outside,
    };
    let mut r = MapReader::new(&empty, kind.to_string(), Span::default());
    match kind {
        Kind::Vm | Kind::Profile => {
            read_vm(&mut r, Some(&lookup), &mut d);
        }
        Kind::Network => {
            read_network(&mut r, "n", &mut d);
        }
        Kind::Pool => {
            read_pool(&mut r, &mut d);
        }
        Kind::Image => {
            read_image(&mut r, &mut d);
        }
        Kind::Disk => {
            read_shared_disk(&mut r, &mut d);
        }
        Kind::Dns => {
            read_dns(&mut r, &mut d);
        }
        Kind::SecurityGroup => {
            read_security_group(&mut r, &mut d);
        }
    }
    r.take("depends_on");
    for guard in ["prevent_destroy", "create_before_destroy", "ignore_changes"] {
        r.take(guard);
    }
    r.take("type");
    r.asked
}

/// `ignore_changes` names plan keys that siteplan can leave alone on existing resources.
fn check_ignorable(kind: Kind, names: &[Ref], d: &mut Diagnostics) {
    let known = keys::ignorable(kind);
    for name in names {
        if known.contains(&name.name.as_str()) {
            continue;
        }
        let mut p = Problem::error(
            "plan::unknown-ignore",
            format!(
                "`ignore_changes` names `{}`, which a {kind} cannot ignore",
                name.name
            ),
        )
        .label(name.span, "not an ignorable key");
        p = match did_you_mean(&name.name, known.iter().copied()) {
            Some(close) => p.help(format!("did you mean `{close}`?")),
            None => p.help(format!("a {kind} can ignore: {}", known.join(", "))),
        };
        d.push(p);
    }
}

fn unimplemented_keys(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Vm | Kind::Profile => keys::VM_UNIMPLEMENTED,
        Kind::Network => keys::NETWORK_UNIMPLEMENTED,
        Kind::Pool => keys::POOL_UNIMPLEMENTED,
        Kind::Image => keys::IMAGE_UNIMPLEMENTED,
        Kind::Disk => keys::DISK_UNIMPLEMENTED,
        Kind::Dns => keys::DNS_UNIMPLEMENTED,
        Kind::SecurityGroup => keys::SECURITY_GROUP_UNIMPLEMENTED,
    }
}

/// The entry's `type`, defaulting to vm as kcli does.
fn entry_type(name: &str, key: &Node, value: &Node, d: &mut Diagnostics) -> Option<Kind> {
    match &value.value {
        Value::Map(_) | Value::Null => {}
        _ => {
            d.push(
                Problem::error(
                    "plan::entry-not-a-map",
                    format!(
                        "entry `{name}` must be a map of keys, but is {}",
                        value.kind_name()
                    ),
                )
                .label(value.span, "expected a map")
                .help(format!(
                    "write `{name}:` followed by indented keys such as `type: vm`"
                )),
            );
            return None;
        }
    }
    let Some(type_node) = value.get("type") else {
        return Some(Kind::Vm);
    };
    let Value::Str(type_name) = &type_node.value else {
        d.push(
            Problem::error(
                "plan::bad-type",
                format!("the type of `{name}` must be a string"),
            )
            .label(type_node.span, "not a type name"),
        );
        return None;
    };
    let kind = match type_name.as_str() {
        "vm" => Kind::Vm,
        "network" => Kind::Network,
        "pool" => Kind::Pool,
        "image" | "template" => Kind::Image,
        "disk" => Kind::Disk,
        "profile" => Kind::Profile,
        "dns" => Kind::Dns,
        "securitygroup" => Kind::SecurityGroup,
        other => {
            let problem = if let Some((_, why)) =
                keys::UNSUPPORTED_TYPES.iter().find(|(t, _)| *t == other)
            {
                Problem::error(
                    "plan::unsupported-type",
                    format!("entries of type `{other}` are not supported by siteplan (`{name}`)"),
                )
                .label(type_node.span, "kcli type that siteplan does not implement")
                .help(*why)
            } else {
                let hint = match did_you_mean(other, keys::SUPPORTED_TYPES.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the types are: {}", keys::SUPPORTED_TYPES.join(", ")),
                };
                Problem::error(
                    "plan::unknown-type",
                    format!("unknown entry type `{other}` for `{name}`"),
                )
                .label(type_node.span, "unknown type")
                .help(hint)
            };
            d.push(problem);
            return None;
        }
    };
    let _ = key;
    Some(kind)
}

/// What a VM may draw on besides its own keys: the plan's profiles and images, and what the
/// kcli configuration gives it.
struct Lookup<'a> {
    /// The kcli configuration was turned off (said in messages about what it would give).
    kcli_off: bool,
    profiles: &'a BTreeMap<&'a str, &'a Node>,
    images: &'a [&'a str],
    outside: &'a Outside,
}

/// The kcli configuration's part in one VM: the profile it names, if the plan does not declare
/// it, and the defaults of its client, re-pointed at the VM's name.
#[derive(Default)]
struct Outside {
    profile: Option<Node>,
    defaults: Vec<Node>,
}

impl Outside {
    fn for_vm(
        vm: &Node,
        profiles: &BTreeMap<&str, &Node>,
        kcli: &KcliConfig,
        span: Span,
    ) -> Outside {
        let named = |key: &str| vm.get(key).and_then(Node::key_text);
        let profile = named("profile")
            .filter(|p| !profiles.contains_key(p.as_str()))
            .and_then(|p| kcli.profiles.get(&p))
            .map(|p| p.respanned(span));
        let client = named("client").or_else(|| {
            profile
                .as_ref()
                .and_then(|p| p.get("client"))
                .and_then(Node::key_text)
        });
        Outside {
            profile,
            // `client` there says where VMs go by default, which `--provider` may overrule: it
            // is the registry's to read, not a VM's own `client:`.
            defaults: kcli
                .vm_defaults(client.as_deref())
                .into_iter()
                .map(|n| n.respanned(span).without("client"))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_kcli_forms() {
        let g = 1u64 << 30;
        assert_eq!(parse_size_text("4G", 1 << 20), Some(4 * g));
        assert_eq!(parse_size_text("4Gi", 1 << 20), Some(4 * g));
        assert_eq!(parse_size_text("4GB", 1 << 20), Some(4 * g));
        assert_eq!(parse_size_text("512M", 1 << 30), Some(512 << 20));
        assert_eq!(parse_size_text("1.5", 1 << 30), Some(g + g / 2));
        assert_eq!(parse_size_text("20", 1 << 30), Some(20 * g));
        assert_eq!(parse_size_text("0", 1 << 30), None);
        assert_eq!(parse_size_text("lots", 1 << 30), None);
        assert_eq!(parse_size_text("4X", 1 << 30), None);
        assert_eq!(parse_size_text("99999999999999999999T", 1 << 30), None);
    }

    fn first_vm(text: &str) -> (Vm, Diagnostics) {
        let (root, _) = crate::manifest::yaml::parse(text).unwrap();
        let mut d = Diagnostics::default();
        let read = read_entries(&root, &KcliConfig::default(), &mut d);
        match read.entries.into_iter().next().map(|e| e.kind) {
            Some(EntryKind::Vm(vm)) => (*vm, d),
            _ => panic!("no vm"),
        }
    }

    #[test]
    fn file_modes_read_as_kcli_and_chmod_read_them() {
        let (vm, d) = first_vm(
            "vm1:\n  files:\n  - {path: /a, content: x, mode: 600}\n  - {path: /b, content: x, mode: 0644}\n  - {path: /c, content: x, mode: '0755'}\n",
        );
        assert!(!d.has_errors());
        let modes: Vec<_> = vm.files.iter().map(|f| f.mode).collect();
        assert_eq!(modes, [Some(0o600), Some(0o644), Some(0o755)]);
        let (_, d) = first_vm("vm1:\n  files:\n  - {path: /a, content: x, mode: 689}\n");
        assert!(d.has_errors(), "8 and 9 are not octal digits");
    }

    #[test]
    fn none_written_by_an_empty_parameter_is_no_value() {
        let (vm, d) = first_vm(
            "vm1:\n  memory: None\n  dns: None\n  nets:\n  - name: default\n    ip: None\n    mac: None\n",
        );
        assert!(!d.has_errors(), "{:?}", d.into_sorted());
        assert_eq!(vm.memory_mib, 512);
        assert!(vm.dns.is_none() && vm.nets[0].ip.is_none() && vm.nets[0].mac.is_none());
    }

    #[test]
    fn every_key_of_a_vm_and_its_profile_is_a_variable() {
        let (vm, d) = first_vm(
            "vm1:\n  profile: p\n  role: worker\n  memory: 1024\np:\n  type: profile\n  team: a\n  memory: 2048\n",
        );
        assert!(!d.has_errors());
        assert_eq!(vm.variables["role"], "worker");
        assert_eq!(vm.variables["team"], "a");
        assert_eq!(vm.variables["memory"], 1024, "the VM's own value wins");
    }
}
