//! Reads the rendered YAML tree into typed entries, applying kcli's defaults.
//!
//! Every key an entry may have is asked for through a `MapReader`; whatever is left unasked at
//! the end is either a kcli key siteplan does not implement (a warning) or a mistake (an error
//! with a suggestion). So the set of keys siteplan understands is exactly what this file reads.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::kcli::KcliConfig;
use super::keys;
use super::model::*;
use super::yaml::{Node, Value};
use crate::diagnostics::{did_you_mean, Diagnostics, Problem, Span};

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

/// Image file names kcli takes as a profile: an image already in the pool.
const IMAGE_SUFFIXES: &[&str] = &[".qcow2", ".img", ".raw", ".iso", ".vmdk"];

/// Reads a VM, or checks a profile's keys when `lookup` is `None`.
fn read_vm<'a>(r: &mut MapReader<'a>, lookup: Option<&Lookup<'a>>, d: &mut Diagnostics) -> Vm {
    let mut profile = match lookup {
        Some(_) => r.reference("profile", d),
        None => None,
    };
    let mut image_from_profile = None;
    if let (Some(p), Some(lookup)) = (profile.clone(), lookup) {
        if let Some(node) = lookup.profiles.get(p.name.as_str()) {
            r.add_layer(node);
        } else if let Some(node) = &lookup.outside.profile {
            // A profile from ~/.kcli/profiles.yml: it gives variables as a plan's profile does.
            r.add_layer(node);
        } else if lookup.images.contains(&p.name.as_str())
            || IMAGE_SUFFIXES.iter().any(|s| p.name.ends_with(s))
        {
            // kcli takes an image's name where a profile is expected.
            image_from_profile = Some(p);
            profile = None;
        } else {
            let mut known: Vec<&str> = lookup.profiles.keys().copied().collect();
            known.extend(lookup.images);
            let off = !super::kcli::enabled();
            let nowhere = if off {
                "which this plan does not declare"
            } else {
                "which is neither declared in this plan nor in ~/.kcli/profiles.yml"
            };
            match did_you_mean(&p.name, known) {
                // A slip of the pen: not taken as anything else.
                Some(near) => d.push(
                    Problem::error(
                        "plan::unknown-profile",
                        format!("{} uses profile `{}`, {nowhere}", r.what, p.name),
                    )
                    .label(p.span, "no profile or image has this name")
                    .help(format!("did you mean `{near}`?")),
                ),
                // kcli then looks for an image of that name in the pool (or one it knows how
                // to download): only the provider can tell, so the diff checks it is there.
                None => {
                    d.push(
                        Problem::warning(
                            "plan::profile-as-image",
                            format!(
                                "{} uses profile `{}`, {nowhere}: it is taken as the name of \
                                 an image in the VM's pool, as kcli does",
                                r.what, p.name
                            ),
                        )
                        .label(p.span, "no profile has this name")
                        .help(if off {
                            format!(
                                "the kcli configuration is turned off (--no-kcli-config or {}); \
                                 if this is a profile, declare it in the plan with \
                                 `type: profile`; if an image, write `image: {}`",
                                super::kcli::OFF_VARIABLE,
                                p.name
                            )
                        } else {
                            format!(
                                "if this is a profile, declare it in the plan with `type: \
                                 profile` or in ~/.kcli/profiles.yml; if an image, write \
                                 `image: {}`",
                                p.name
                            )
                        }),
                    );
                    image_from_profile = Some(p);
                    profile = None;
                }
            }
        }
    }
    if let Some(lookup) = lookup {
        for layer in &lookup.outside.defaults {
            r.add_default_layer(layer);
        }
    }

    let numcpus = r
        .int("numcpus", d)
        .map(|(n, span)| {
            let n = positive_u32(n, span, "numcpus", d);
            if n > MAX_VCPUS {
                d.push(
                    Problem::error(
                        "plan::too-large",
                        format!("`numcpus` {n} is more than QEMU gives one VM"),
                    )
                    .label(span, format!("at most {MAX_VCPUS}")),
                );
            }
            n
        })
        .unwrap_or(2);
    let memory_mib = r
        .size_at("memory", Unit::Mib, d)
        .map(|(bytes, span)| {
            let mib = bytes.div_ceil(1024 * 1024);
            if mib > MAX_MEMORY_MIB {
                d.push(
                    Problem::error(
                        "plan::too-large",
                        format!("`memory` {mib} MiB is more than any host has"),
                    )
                    .label(span, format!("at most {MAX_MEMORY_MIB} MiB (16 TiB)"))
                    .help("`memory` is in MiB: 4096 is 4 GiB"),
                );
            }
            mib
        })
        .unwrap_or(512);
    let cpumodel = r
        .string("cpumodel", d)
        .map_or_else(|| "host-model".into(), |s| s.value);
    let virttype = r
        .choice("virttype", &["qemu", "kvm"], d)
        .map(|s| match s.as_str() {
            "kvm" => VirtType::Kvm,
            _ => VirtType::Qemu,
        });
    let uefi = r.bool("uefi", false, d);
    let pool = r
        .reference("pool", d)
        .unwrap_or_else(|| r.default_ref("default"));
    let image = r.reference("image", d).or(image_from_profile);
    let diskinterface = r
        .choice("diskinterface", DISK_BUSES, d)
        .map_or(DiskBus::Virtio, |s| disk_bus(&s));
    let diskthin = r.bool("diskthin", true, d);
    let disksize = r.size("disksize", Unit::Gib, d).unwrap_or(10 * GIB);
    let disks = match r.take("disks") {
        Some(node) => read_vm_disks(node, &pool, diskthin, diskinterface, d),
        None => vec![VmDisk {
            size_bytes: disksize,
            pool: pool.clone(),
            thin: diskthin,
            interface: diskinterface,
            name: None,
            image: None,
            span: r.span,
        }],
    };
    let nets = match r.take("nets") {
        Some(node) => read_nics(node, d),
        None => vec![Nic {
            network: r.default_ref("default"),
            mac: None,
            ip: None,
            prefix: None,
            gateway: None,
            dns: None,
            model: "virtio".into(),
            noconf: false,
            span: r.span,
        }],
    };
    let start = r.bool("start", true, d);
    let autostart = r.bool("autostart", false, d);
    let cloudinit = r.bool("cloudinit", true, d);
    let keys = r.strings("keys", d);
    let cmds = r.strings("cmds", d);
    let scripts = r.strings("scripts", d);
    let files = r
        .take("files")
        .map(|n| read_files(n, d))
        .unwrap_or_default();
    let domain = r.string("domain", d).map(|s| s.value);
    let dns = r.ip("dns", d).map(|l| l.value);
    let client = r.string("client", d).map(|s| s.value);
    let rootpassword = r.string("rootpassword", d).map(|s| {
        crate::secrets::register(&s.value);
        Secret::new(s.value)
    });
    let reservedns = r.bool("reservedns", false, d);
    let reserveip = r.bool("reserveip", false, d);
    let boot = read_direct_boot(r, d);
    let guestagent = r.bool("guestagent", true, d);
    // kcli's `wait`: the VMs after this one wait until it is ready, for `waittimeout` seconds.
    let wait = r.bool("wait", false, d);
    let wait_command = r.string("waitcommand", d).map(|c| c.value);
    let wait_timeout_s = r
        .int("waittimeout", d)
        .map(|(n, span)| u64::from(positive_u32(n, span, "waittimeout", d)))
        .unwrap_or(DEFAULT_WAIT_SECONDS);
    // kcli's hotplug keys: true, or the most the VM may grow to.
    let max_cpus = match r.take("cpuhotplug").map(|n| &n.value) {
        Some(Value::Bool(true)) => Some(numcpus.saturating_mul(4)),
        Some(Value::Bool(false) | Value::Null) | None => None,
        Some(_) => r
            .int("cpuhotplug", d)
            .map(|(n, span)| positive_u32(n, span, "cpuhotplug", d).max(numcpus)),
    };
    let max_memory_mib = match r.take("memoryhotplug").map(|n| &n.value) {
        Some(Value::Bool(true)) => Some(memory_mib.saturating_mul(4)),
        Some(Value::Bool(false) | Value::Null) | None => None,
        Some(_) => r
            .size("memoryhotplug", Unit::Mib, d)
            .map(|bytes| bytes.div_ceil(1024 * 1024).max(memory_mib)),
    };
    Vm {
        profile,
        numcpus,
        memory_mib,
        cpumodel,
        virttype,
        uefi,
        pool,
        image,
        disks,
        diskinterface,
        diskthin,
        nets,
        start,
        autostart,
        cloudinit,
        keys,
        cmds,
        scripts,
        files,
        domain,
        dns,
        client,
        rootpassword,
        reservedns,
        reserveip,
        boot,
        guestagent,
        wait,
        wait_command,
        wait_timeout_s,
        max_cpus,
        max_memory_mib,
        variables: sensitive_registered(r.variables()),
        shown: None,
    }
}

/// A VM's keys as template variables, with the values of those that name a secret
/// (`admin_password`, `api_token`...) registered, as parameters' are: scripts carry them into
/// the seed, whose review text must not show them.
fn sensitive_registered(
    variables: BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    for (name, value) in &variables {
        if crate::secrets::is_sensitive_name(name) {
            super::params::register_leaves(value);
        }
    }
    variables
}

/// kcli's `kernel`, `initrd` and `cmdline`: each file an absolute path on the provider's host or
/// the name of an image (declared in the plan, or a volume already in the VM's pool).
fn read_direct_boot(r: &mut MapReader, d: &mut Diagnostics) -> Option<DirectBoot> {
    let mut file = |key: &'static str, d: &mut Diagnostics| {
        let s = r.string(key, d)?;
        if s.value.is_empty() {
            return None;
        }
        if s.value.starts_with('/') {
            return Some(BootFile::Path(s));
        }
        // Fetched as an image of the plan's own (`images_for_boot_urls`), as kcli's images
        // are from a URL.
        if s.value.starts_with("http://") || s.value.starts_with("https://") {
            return Some(BootFile::Image(Ref {
                name: s.value,
                span: s.span,
            }));
        }
        if s.value.contains("://") || s.value.contains('/') {
            d.push(
                Problem::error(
                    "plan::bad-boot-file",
                    format!(
                        "`{key}` of {} must be an http(s) URL, an absolute path or an image name",
                        r.what
                    ),
                )
                .label(s.span, "neither a URL, an absolute path nor an image name")
                .help(format!(
                    "give an http(s) URL, or declare an entry of `type: image` with its `url` \
                     and `sha256`, and write that entry's name here (`{key}: my-{key}`)"
                )),
            );
            return None;
        }
        Some(BootFile::Image(Ref {
            name: s.value,
            span: s.span,
        }))
    };
    let kernel = file("kernel", d);
    let initrd = file("initrd", d);
    let cmdline = r.string("cmdline", d);
    match kernel {
        Some(kernel) => Some(DirectBoot {
            kernel,
            initrd,
            cmdline: cmdline.map(|c| c.value),
        }),
        None => {
            let stray = [
                ("initrd", initrd.map(|f| boot_file_span(&f))),
                ("cmdline", cmdline.map(|c| c.span)),
            ];
            for (key, span) in stray {
                if let Some(span) = span {
                    d.push(
                        Problem::error(
                            "plan::boot-without-kernel",
                            format!("`{key}` of {} is given without a `kernel`", r.what),
                        )
                        .label(span, "used only when the VM boots a kernel directly")
                        .help("add `kernel:` (a path on the host or an image name), or remove this key"),
                    );
                }
            }
            None
        }
    }
}

fn boot_file_span(file: &BootFile) -> Span {
    match file {
        BootFile::Path(p) => p.span,
        BootFile::Image(r) => r.span,
    }
}

const DISK_BUSES: &[&str] = &["virtio", "scsi", "sata", "ide"];

fn disk_bus(name: &str) -> DiskBus {
    match name {
        "scsi" => DiskBus::Scsi,
        "sata" => DiskBus::Sata,
        "ide" => DiskBus::Ide,
        _ => DiskBus::Virtio,
    }
}

fn read_vm_disks(
    node: &Node,
    pool: &Ref,
    thin: bool,
    interface: DiskBus,
    d: &mut Diagnostics,
) -> Vec<VmDisk> {
    let Some(items) = list(node, "disks", d) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let default = VmDisk {
                size_bytes: 10 * GIB,
                pool: pool.clone(),
                thin,
                interface,
                name: None,
                image: None,
                span: item.span,
            };
            match &item.value {
                Value::Int(_) | Value::Float(_) | Value::Str(_) => {
                    let size_bytes = parse_size(item, Unit::Gib, "disk size", d)?;
                    Some(VmDisk {
                        size_bytes,
                        ..default
                    })
                }
                Value::Map(_) => {
                    let mut r = MapReader::new(item, "disk".into(), item.span).with_variables();
                    let disk = VmDisk {
                        size_bytes: r.size("size", Unit::Gib, d).unwrap_or(default.size_bytes),
                        pool: r.reference("pool", d).unwrap_or(default.pool),
                        thin: r.bool("thin", thin, d),
                        interface: r
                            .choice("interface", DISK_BUSES, d)
                            .map_or(interface, |s| disk_bus(&s)),
                        name: r.string("name", d).map(|s| s.value),
                        image: r.reference("image", d),
                        span: item.span,
                    };
                    r.finish(keys::VM_DISK_UNIMPLEMENTED, d);
                    Some(disk)
                }
                _ => {
                    d.push(
                        Problem::error(
                            "plan::bad-disk",
                            format!("a disk is a size or a map, not {}", item.kind_name()),
                        )
                        .label(item.span, "expected `20` (GB) or `{size: 20, pool: ...}`"),
                    );
                    None
                }
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .inspect(|disk| {
            if disk.size_bytes > MAX_DISK_BYTES {
                d.push(
                    Problem::error(
                        "plan::too-large",
                        format!(
                            "a disk of {} GiB is larger than any pool holds",
                            disk.size_bytes >> 30
                        ),
                    )
                    .label(disk.span, "at most 1 PiB")
                    .help("disk sizes are in GB: 20 is 20 GB"),
                );
            }
        })
        .collect()
}

fn read_nics(node: &Node, d: &mut Diagnostics) -> Vec<Nic> {
    let Some(items) = list(node, "nets", d) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.value {
            Value::Str(name) => Some(Nic {
                network: Ref {
                    name: name.clone(),
                    span: item.span,
                },
                mac: None,
                ip: None,
                prefix: None,
                gateway: None,
                dns: None,
                model: "virtio".into(),
                noconf: false,
                span: item.span,
            }),
            Value::Map(_) => {
                let mut r = MapReader::new(item, "NIC".into(), item.span).with_variables();
                let named = r.peek("name").map(|n| n.span);
                let network = r.reference("name", d);
                let mac = r.string("mac", d).and_then(|m| mac_address(m, d));
                let ip = r.ip("ip", d);
                let mask = r.ip("mask", d).or_else(|| r.ip("netmask", d));
                let prefix_node = r.int("prefix", d);
                let prefix = match (prefix_node, mask) {
                    (Some((p, span)), _) => {
                        if (0..=128).contains(&p) {
                            Some(p as u8)
                        } else {
                            d.push(
                                Problem::error(
                                    "plan::bad-prefix",
                                    format!("prefix {p} is not 0 to 128"),
                                )
                                .label(span, "not a prefix length"),
                            );
                            None
                        }
                    }
                    (None, Some(mask)) => match ipnet::ipv4_mask_to_prefix(match mask.value {
                        IpAddr::V4(m) => m,
                        IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
                    }) {
                        Ok(p) if mask.value.is_ipv4() => Some(p),
                        _ => {
                            d.push(
                                Problem::error("plan::bad-netmask", "not a valid IPv4 netmask")
                                    .label(mask.span, "the mask's ones must be contiguous")
                                    .help("write `prefix: 24` or `netmask: 255.255.255.0`"),
                            );
                            None
                        }
                    },
                    (None, None) => None,
                };
                let gateway = r.ip("gateway", d);
                let dns = r.ip("dns", d).map(|l| l.value);
                // Any model the hypervisor knows (`e1000-82545em`...): kcli passes it through.
                let model = r
                    .string("type", d)
                    .map_or_else(|| "virtio".into(), |m| m.value);
                let noconf = r.bool("noconf", false, d);
                r.finish(keys::NIC_UNIMPLEMENTED, d);
                // kcli: a NIC that names no network is on `default`.
                let network = network.unwrap_or_else(|| {
                    if let Some(span) = named {
                        d.push(
                            Problem::warning(
                                "plan::nic-default-network",
                                "this NIC's network is empty (`None`): it joins network \
                                 `default`, as a NIC without a `name` does in kcli",
                            )
                            .label(span, "no network")
                            .help(
                                "is it a parameter without a value? Name the network, or \
                                 leave `name` out for `default`",
                            ),
                        );
                    }
                    Ref {
                        name: "default".into(),
                        span: named.unwrap_or(item.span),
                    }
                });
                Some(Nic {
                    network,
                    mac,
                    ip,
                    prefix,
                    gateway,
                    dns,
                    model,
                    noconf,
                    span: item.span,
                })
            }
            _ => {
                d.push(
                    Problem::error(
                        "plan::bad-nic",
                        format!("a NIC is a network name or a map, not {}", item.kind_name()),
                    )
                    .label(
                        item.span,
                        "expected `NETWORK` or `{name: NETWORK, ip: ...}`",
                    ),
                );
                None
            }
        })
        .collect()
}

fn mac_address(mac: Located<String>, d: &mut Diagnostics) -> Option<String> {
    let parts: Vec<&str> = mac.value.split(':').collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        d.push(
            Problem::error(
                "plan::bad-mac",
                format!("`{}` is not a MAC address", mac.value),
            )
            .label(mac.span, "expected six hex pairs such as 52:54:00:12:34:56"),
        );
        return None;
    }
    let first = u8::from_str_radix(parts[0], 16).unwrap_or(0);
    if first & 1 == 1 {
        d.push(
            Problem::error(
                "plan::bad-mac",
                format!("`{}` is a multicast MAC address", mac.value),
            )
            .label(mac.span, "the first byte is odd")
            .help("libvirt guests conventionally use the 52:54:00 prefix"),
        );
        return None;
    }
    Some(mac.value.to_ascii_lowercase())
}

/// A file's mode as kcli and chmod read it: digits written plainly (`600`, `"0644"`) are octal;
/// YAML's own octal (`0644`, already a number) is taken as it is.
fn file_mode(node: &Node, d: &mut Diagnostics) -> Option<u32> {
    let octal = |digits: &str| u32::from_str_radix(digits.trim_start_matches("0o"), 8).ok();
    let mode = match &node.value {
        Value::Int(n) if node.span.len == n.to_string().len() => octal(&n.to_string()),
        Value::Int(n) => u32::try_from(*n).ok(),
        Value::Str(s) => octal(s.trim()),
        _ => None,
    };
    match mode {
        Some(m) if m <= 0o7777 => Some(m),
        _ => {
            d.push(
                Problem::error(
                    "plan::bad-mode",
                    "a file mode is an octal number such as 0644",
                )
                .label(node.span, "not a file mode"),
            );
            None
        }
    }
}

fn read_files(node: &Node, d: &mut Diagnostics) -> Vec<GuestFile> {
    let Some(items) = list(node, "files", d) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.value {
            // kcli: a bare string is a local file copied to the same path in the guest.
            Value::Str(path) => Some(GuestFile {
                path: path.clone(),
                source: FileSource::Origin(path.clone()),
                owner: None,
                mode: None,
                render: true,
                variables: BTreeMap::new(),
            }),
            Value::Map(_) => {
                let mut r = MapReader::new(item, "file".into(), item.span).with_variables();
                let path = r.string("path", d);
                let content = r.string("content", d);
                let origin = r.string("origin", d);
                let owner = r.string("owner", d).map(|s| s.value);
                let mode = r.take("mode").and_then(|node| file_mode(node, d));
                let render = r.bool("render", true, d);
                let variables = r.variables();
                r.finish(&[], d);
                let path = match path {
                    Some(p) if p.value.starts_with('/') => p.value,
                    Some(p) => {
                        d.push(
                            Problem::error(
                                "plan::relative-path",
                                format!("guest path `{}` is relative", p.value),
                            )
                            .label(p.span, "must start with /"),
                        );
                        return None;
                    }
                    None => {
                        d.push(
                            Problem::error(
                                "plan::file-without-path",
                                "a file needs a `path` in the guest",
                            )
                            .label(item.span, "no `path`"),
                        );
                        return None;
                    }
                };
                let source = match (content, origin) {
                    (Some(c), None) => {
                        crate::secrets::register_private_keys(&c.value);
                        FileSource::Content(c.value)
                    }
                    (None, Some(o)) => FileSource::Origin(o.value),
                    (Some(c), Some(_)) => {
                        d.push(
                            Problem::error(
                                "plan::file-source",
                                format!("file `{path}` has both `content` and `origin`"),
                            )
                            .label(c.span, "choose one"),
                        );
                        return None;
                    }
                    (None, None) => {
                        d.push(
                            Problem::error(
                                "plan::file-source",
                                format!("file `{path}` has neither `content` nor `origin`"),
                            )
                            .label(item.span, "what goes in the file?"),
                        );
                        return None;
                    }
                };
                Some(GuestFile {
                    path,
                    source,
                    owner,
                    mode,
                    render,
                    variables,
                })
            }
            _ => {
                d.push(
                    Problem::error(
                        "plan::bad-file",
                        format!("a file is a path or a map, not {}", item.kind_name()),
                    )
                    .label(item.span, "expected `{path: /etc/motd, content: ...}`"),
                );
                None
            }
        })
        .collect()
}

fn read_network(r: &mut MapReader, name: &str, d: &mut Diagnostics) -> Network {
    let cidr = r
        .string("cidr", d)
        .and_then(|c| match c.value.parse::<IpNet>() {
            Ok(net) => Some(Located {
                value: net.trunc(),
                span: c.span,
            }),
            Err(_) => {
                d.push(
                    Problem::error("plan::bad-cidr", format!("`{}` is not a CIDR", c.value))
                        .label(c.span, "expected an address and a prefix length")
                        .help("write it as 192.168.100.0/24"),
                );
                None
            }
        });
    let nat = r.bool("nat", true, d);
    let dhcp = r.bool("dhcp", true, d);
    let domain = r
        .string("domain", d)
        .map_or_else(|| name.to_string(), |s| s.value);
    let dhcp_start = r.ip("dhcp_start", d);
    let dhcp_end = r.ip("dhcp_end", d);
    let forward_mode = r.choice("forward_mode", &["nat", "route", "open", "bridge"], d);
    let bridge = r.bool("bridge", false, d);
    let bridgename = r
        .string("bridgename", d)
        .map_or_else(|| name.to_string(), |s| s.value);
    let mtu = r.int("mtu", d).and_then(|(m, span)| {
        if (68..=65535).contains(&m) {
            Some(m as u32)
        } else {
            d.push(
                Problem::error("plan::bad-mtu", format!("MTU {m} is out of range"))
                    .label(span, "must be 68 to 65535"),
            );
            None
        }
    });
    let dns = r.bool("dns", true, d);
    let pxe = r.string("pxe", d).map(|s| s.value);
    let mode = match forward_mode.as_deref() {
        Some("nat") => NetworkMode::Nat,
        Some("route") => NetworkMode::Route,
        Some("open") => NetworkMode::Open,
        Some("bridge") => NetworkMode::Bridge,
        _ if bridge => NetworkMode::Bridge,
        _ if !nat => NetworkMode::Isolated,
        _ => NetworkMode::Nat,
    };
    if cidr.is_none() && mode != NetworkMode::Bridge && r.peek("cidr").is_none() {
        d.push(
            Problem::error(
                "plan::missing-cidr",
                format!("network `{name}` has no `cidr`"),
            )
            .label(
                r.span,
                "every network but a bridged one needs an address range",
            )
            .help("add `cidr: 192.168.100.0/24`"),
        );
    }
    Network {
        cidr,
        mode,
        dhcp,
        domain,
        dhcp_start,
        dhcp_end,
        bridgename,
        mtu,
        dns,
        pxe,
    }
}

fn read_pool(r: &mut MapReader, d: &mut Diagnostics) -> Pool {
    if let Some(kind) = r.string("pooltype", d) {
        if kind.value != "dir" {
            d.push(
                Problem::error(
                    "plan::unsupported-pool",
                    format!("pool type `{}` is not supported", kind.value),
                )
                .label(kind.span, "siteplan creates dir pools only")
                .help("remove `pooltype` or set it to dir"),
            );
        }
    }
    let path = match r.string("path", d) {
        Some(p) if is_system_directory(&p.value) => {
            d.push(
                Problem::error(
                    "plan::system-pool-path",
                    format!("pool path `{}` is a system directory", p.value),
                )
                .label(
                    p.span,
                    "volumes would be written among the host's own files",
                )
                .help("use a directory of its own, such as /var/lib/libvirt/images/lab"),
            );
            String::new()
        }
        Some(p) if p.value.starts_with('/') => p.value,
        Some(p) => {
            d.push(
                Problem::error(
                    "plan::relative-path",
                    format!("pool path `{}` is relative", p.value),
                )
                .label(p.span, "libvirt needs an absolute path")
                .help("write the full path, such as /var/lib/libvirt/images"),
            );
            String::new()
        }
        None => {
            if r.peek("path").is_none() {
                d.push(
                    Problem::error("plan::missing-path", format!("{} has no `path`", r.what))
                        .label(r.span, "where should its volumes live?")
                        .help("add `path: /var/lib/libvirt/images` (a directory on the host)"),
                );
            }
            String::new()
        }
    };
    Pool { path }
}

fn read_image(r: &mut MapReader, d: &mut Diagnostics) -> Image {
    let url = r.string("url", d).and_then(|u| {
        // `./` and `../` paths are relative to the plan file.
        let ok = ["http://", "https://", "file://", "/", "./", "../"]
            .iter()
            .any(|p| u.value.starts_with(p));
        if ok {
            Some(u.value)
        } else {
            d.push(
                Problem::error(
                    "plan::bad-url",
                    format!("cannot fetch an image from `{}`", u.value),
                )
                .label(u.span, "not an http(s) URL or a path")
                .help(
                    "use http://, https://, file://, an absolute path, or a path relative to \
                     the plan that starts with ./ or ../",
                ),
            );
            None
        }
    });
    let pool = r
        .reference("pool", d)
        .unwrap_or_else(|| r.default_ref("default"));
    let size_bytes = r.size("size", Unit::Gib, d);
    let sha256 = r.string("sha256", d).and_then(|s| {
        let hex = s.value.trim_start_matches("sha256:").to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(hex)
        } else {
            d.push(
                Problem::error("plan::bad-checksum", "not a SHA-256 digest")
                    .label(s.span, "expected 64 hexadecimal digits"),
            );
            None
        }
    });
    Image {
        url,
        pool,
        size_bytes,
        sha256,
    }
}

fn read_shared_disk(r: &mut MapReader, d: &mut Diagnostics) -> SharedDisk {
    SharedDisk {
        size_bytes: r.size("size", Unit::Gib, d).unwrap_or(10 * GIB),
        pool: r
            .reference("pool", d)
            .unwrap_or_else(|| r.default_ref("default")),
        thin: r.bool("thin", true, d),
        image: r.reference("image", d),
        vms: r.refs("vms", d),
    }
}

/// kcli's `dns` entry; `None` (reported) without an address.
fn read_dns(r: &mut MapReader, d: &mut Diagnostics) -> Option<DnsRecord> {
    let net = r
        .reference("net", d)
        .unwrap_or_else(|| r.default_ref("default"));
    let ip = r.ip("ip", d);
    let domain = r.string("domain", d).map(|s| s.value);
    let aliases = r.strings("alias", d);
    if ip.is_none() && r.peek("ip").is_none() {
        d.push(
            Problem::error("plan::dns-without-ip", format!("{} has no `ip`", r.what))
                .label(r.span, "which address does this name resolve to?")
                .help("add `ip: 192.168.122.10`"),
        );
    }
    Some(DnsRecord {
        net,
        ip: ip?,
        domain,
        aliases,
    })
}

/// `/` and the directories a Linux system keeps its own files in, where no pool belongs.
fn is_system_directory(path: &str) -> bool {
    const SYSTEM: [&str; 17] = [
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run",
        "/sbin", "/sys", "/tmp", "/usr", "/var", "/var/lib",
    ];
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    SYSTEM.contains(&trimmed)
}

/// How long what waits for a VM waits for its guest to be ready, unless `waittimeout` says.
const DEFAULT_WAIT_SECONDS: u64 = 900;

/// More vCPUs than QEMU gives one VM.
const MAX_VCPUS: u32 = 4096;
/// More memory than any host has: 16 TiB.
const MAX_MEMORY_MIB: u64 = 16 << 20;
/// A larger disk than any pool holds: 1 PiB.
const MAX_DISK_BYTES: u64 = 1 << 50;

fn positive_u32(n: i64, span: Span, key: &str, d: &mut Diagnostics) -> u32 {
    match u32::try_from(n) {
        Ok(v) if v > 0 => v,
        _ => {
            d.push(
                Problem::error(
                    "plan::bad-number",
                    format!("`{key}` must be a positive integer, not {n}"),
                )
                .label(span, "out of range"),
            );
            1
        }
    }
}

fn list<'a>(node: &'a Node, key: &str, d: &mut Diagnostics) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Null => Some(&[]),
        _ => {
            d.push(
                Problem::error(
                    "plan::not-a-list",
                    format!("`{key}` must be a list, not {}", node.kind_name()),
                )
                .label(node.span, "expected a list")
                .help(format!("write `{key}: [a, b]` or one `- item` per line")),
            );
            None
        }
    }
}

/// The unit a bare number means.
#[derive(Clone, Copy)]
pub enum Unit {
    Mib,
    Gib,
}

/// Parses kcli's size forms: `20` (in the default unit), `1.5`, `512M`, `4G`, `4Gi`, `4GB`, `1T`.
pub fn parse_size(node: &Node, default: Unit, what: &str, d: &mut Diagnostics) -> Option<u64> {
    let default_factor = match default {
        Unit::Mib => 1u64 << 20,
        Unit::Gib => 1u64 << 30,
    };
    let bytes = match &node.value {
        Value::Int(n) => (*n > 0)
            .then(|| (*n as u64).checked_mul(default_factor))
            .flatten(),
        Value::Float(f) if f.is_finite() && *f > 0.0 => Some((f * default_factor as f64) as u64),
        Value::Str(s) => parse_size_text(s, default_factor),
        _ => None,
    };
    match bytes {
        Some(b) if b > 0 => Some(b),
        _ => {
            let default_unit = match default {
                Unit::Mib => "MiB",
                Unit::Gib => "GiB",
            };
            let shown = match &node.value {
                Value::Str(s) => s.clone(),
                Value::Int(n) => n.to_string(),
                Value::Float(f) => f.to_string(),
                _ => node.kind_name().to_string(),
            };
            d.push(
                Problem::error("plan::bad-size", format!("{what} `{shown}` is not a positive size"))
                    .label(node.span, "not a positive size")
                    .help(format!(
                        "write a number ({default_unit}) or a number with a unit, such as 512M, 4G or 1T"
                    )),
            );
            None
        }
    }
}

fn parse_size_text(text: &str, default_factor: u64) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let factor = match unit {
        "" => default_factor,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Reads the keys of one map, remembering which were asked for.
///
/// A VM that uses a profile reads through two layers: its own keys, then the profile's.
pub struct MapReader<'a> {
    layers: Vec<&'a [(Node, Node)]>,
    used: Vec<String>,
    /// What the map is, for messages: "vm `web1`".
    pub what: String,
    /// Where the map's name is: defaults point here.
    pub span: Span,
    /// Every key asked for, present or not (for checking the schema against the reader).
    pub asked: Vec<&'static str>,
    /// The map's keys are template variables (a VM's, and its NICs', disks' and files'), so a
    /// key nobody reads is kept for the templates rather than ignored.
    variables: bool,
    /// Names older kcli plans used for keys now spelt otherwise (`template` for `image`): said
    /// as such when left unread.
    older_names: &'static [(&'static str, &'static str)],
    /// How many layers, from the first, give template variables: the map's own and its
    /// profile's, not the kcli configuration's defaults.
    variable_layers: usize,
}

impl<'a> MapReader<'a> {
    pub fn new(node: &'a Node, what: String, span: Span) -> Self {
        MapReader {
            layers: vec![node.as_map().unwrap_or(&[])],
            used: Vec::new(),
            what,
            span,
            asked: Vec::new(),
            variables: false,
            older_names: &[],
            variable_layers: 1,
        }
    }

    /// Every key of the variable layers with its value, the first layer winning: what kcli
    /// gives a VM's script and file templates besides the plan's parameters.
    fn variables(&self) -> BTreeMap<String, serde_json::Value> {
        let mut vars = BTreeMap::new();
        for layer in self.layers.iter().take(self.variable_layers).rev() {
            for (key, value) in layer.iter() {
                if let Some(name) = key.key_text() {
                    vars.insert(name, value.to_json());
                }
            }
        }
        vars
    }

    /// Says that the map's keys are template variables (see `variables`).
    fn with_variables(mut self) -> Self {
        self.variables = true;
        self
    }

    /// Says which of the map's keys older kcli plans used for others (see `older_names`).
    fn with_older_names(mut self, older: &'static [(&'static str, &'static str)]) -> Self {
        self.older_names = older;
        self
    }

    fn add_layer(&mut self, node: &'a Node) {
        self.layers.push(node.as_map().unwrap_or(&[]));
        self.variable_layers = self.layers.len();
    }

    /// A layer of defaults from outside the plan: read, but not a template variable.
    fn add_default_layer(&mut self, node: &'a Node) {
        self.layers.push(node.as_map().unwrap_or(&[]));
    }

    fn default_ref(&self, name: &str) -> Ref {
        Ref {
            name: name.to_string(),
            span: self.span,
        }
    }

    /// The value of `key` from the first layer that has it, without marking it used.
    fn peek(&self, key: &str) -> Option<&'a Node> {
        self.layers.iter().find_map(|layer| {
            layer
                .iter()
                .find(|(k, _)| k.key_text().as_deref() == Some(key))
                .map(|(_, v)| v)
        })
    }

    /// The value of `key`, marking it used. `None` written out is no value: it is what an
    /// empty kcli parameter renders as (a warning says so where the parameter is declared).
    pub fn take(&mut self, key: &'static str) -> Option<&'a Node> {
        self.asked.push(key);
        self.used.push(key.to_string());
        self.peek(key)
            .filter(|node| !matches!(&node.value, Value::Str(s) if s == "None"))
    }

    fn type_error(&self, key: &str, node: &Node, expected: &str, d: &mut Diagnostics) {
        d.push(
            Problem::error(
                "plan::wrong-type",
                format!(
                    "`{key}` of {} must be {expected}, not {}",
                    self.what,
                    node.kind_name()
                ),
            )
            .label(node.span, format!("expected {expected}")),
        );
    }

    fn bool(&mut self, key: &'static str, default: bool, d: &mut Diagnostics) -> bool {
        match self.take(key) {
            None => default,
            Some(node) => match node.value {
                Value::Bool(b) => b,
                Value::Null => default,
                _ => {
                    self.type_error(key, node, "true or false", d);
                    default
                }
            },
        }
    }

    fn int(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<(i64, Span)> {
        let node = self.take(key)?;
        match &node.value {
            Value::Int(i) => Some((*i, node.span)),
            Value::Null => None,
            Value::Str(s) if s.parse::<i64>().is_ok() => s.parse().ok().map(|i| (i, node.span)),
            _ => {
                self.type_error(key, node, "an integer", d);
                None
            }
        }
    }

    fn size(&mut self, key: &'static str, unit: Unit, d: &mut Diagnostics) -> Option<u64> {
        self.size_at(key, unit, d).map(|(bytes, _)| bytes)
    }

    /// The size, and where it is written.
    fn size_at(
        &mut self,
        key: &'static str,
        unit: Unit,
        d: &mut Diagnostics,
    ) -> Option<(u64, Span)> {
        let node = self.take(key)?;
        if node.value == Value::Null {
            return None;
        }
        parse_size(node, unit, key, d).map(|bytes| (bytes, node.span))
    }

    fn string(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Located<String>> {
        let node = self.take(key)?;
        let value = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return None,
            _ => {
                self.type_error(key, node, "a string", d);
                return None;
            }
        };
        Some(Located {
            value,
            span: node.span,
        })
    }

    fn reference(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Ref> {
        self.string(key, d).and_then(|s| {
            if s.value.is_empty() {
                None
            } else {
                Some(Ref {
                    name: s.value,
                    span: s.span,
                })
            }
        })
    }

    fn choice(
        &mut self,
        key: &'static str,
        allowed: &[&str],
        d: &mut Diagnostics,
    ) -> Option<String> {
        let s = self.string(key, d)?;
        if allowed.contains(&s.value.as_str()) {
            return Some(s.value);
        }
        let hint = match did_you_mean(&s.value, allowed.iter().copied()) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("choose one of: {}", allowed.join(", ")),
        };
        d.push(
            Problem::error(
                "plan::bad-value",
                format!("`{}` is not a valid `{key}` for {}", s.value, self.what),
            )
            .label(s.span, "not one of the allowed values")
            .help(hint),
        );
        None
    }

    fn ip(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Located<IpAddr>> {
        let s = self.string(key, d)?;
        match s.value.parse::<IpAddr>() {
            Ok(ip) => Some(Located {
                value: ip,
                span: s.span,
            }),
            Err(_) => {
                d.push(
                    Problem::error(
                        "plan::bad-ip",
                        format!("`{}` is not an IP address", s.value),
                    )
                    .label(s.span, format!("`{key}` must be an IPv4 or IPv6 address")),
                );
                None
            }
        }
    }

    fn strings(&mut self, key: &'static str, d: &mut Diagnostics) -> Vec<String> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        let Some(items) = list(node, key, d) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match &item.value {
                Value::Str(s) => Some(s.clone()),
                Value::Int(i) => Some(i.to_string()),
                Value::Float(f) => Some(f.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => {
                    d.push(
                        Problem::error(
                            "plan::wrong-type",
                            format!("items of `{key}` must be strings"),
                        )
                        .label(item.span, format!("this is {}", item.kind_name())),
                    );
                    None
                }
            })
            .collect()
    }

    /// A list of names, or a single name.
    fn refs(&mut self, key: &'static str, d: &mut Diagnostics) -> Vec<Ref> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        if let Value::Str(name) = &node.value {
            return vec![Ref {
                name: name.clone(),
                span: node.span,
            }];
        }
        let Some(items) = list(node, key, d) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match item.key_text() {
                Some(name) if !name.is_empty() => Some(Ref {
                    name,
                    span: item.span,
                }),
                _ => {
                    d.push(
                        Problem::error(
                            "plan::wrong-type",
                            format!("items of `{key}` must be names"),
                        )
                        .label(item.span, "not a name"),
                    );
                    None
                }
            })
            .collect()
    }

    /// Reports the keys of the first layer that nobody asked for. None is an error unless
    /// `--strict`: in kcli a key it does not know is a variable for the VM's script and file
    /// templates, and kcli ignores whatever else it does not read.
    pub fn finish(self, unimplemented: &[&str], d: &mut Diagnostics) {
        let Some(own) = self.layers.first() else {
            return;
        };
        for (key, _) in own.iter() {
            let Some(name) = key.key_text() else {
                d.push(
                    Problem::error("plan::bad-key", "keys must be plain strings")
                        .label(key.span, "not a key"),
                );
                continue;
            };
            if self.used.contains(&name) {
                continue;
            }
            if unimplemented.contains(&name.as_str()) {
                let ignored = if self.variables {
                    "ignores it except as a template variable"
                } else {
                    "ignores it"
                };
                d.push(
                    Problem::warning(
                        "plan::unimplemented-key",
                        format!(
                            "`{name}` is a kcli key that siteplan does not implement yet; {} {ignored}",
                            self.what
                        ),
                    )
                    .label(key.span, "ignored")
                    .help("remove it, or keep it for kcli; `--strict` makes this an error"),
                );
                continue;
            }
            if let Some((_, now)) = self.older_names.iter().find(|(old, _)| *old == name) {
                d.push(
                    Problem::warning(
                        "plan::older-key",
                        format!(
                            "`{name}` is what older kcli plans called `{now}`: {} takes nothing from it, as current kcli takes nothing (it stays a template variable)",
                            self.what
                        ),
                    )
                    .label(key.span, format!("write `{now}`"))
                    .help(format!("rename it to `{now}`; `--strict` makes this an error")),
                );
                continue;
            }
            let vocabulary = self.asked.iter().chain(unimplemented).copied();
            let close = did_you_mean(&name, vocabulary).map(|s| format!("did you mean `{s}`? "));
            let (message, label) = if self.variables {
                (
                    format!(
                        "`{name}` is not a siteplan or kcli key: {} keeps it only as a template variable",
                        self.what
                    ),
                    "a template variable",
                )
            } else {
                (
                    format!("`{name}` is not a key of {}: it is ignored", self.what),
                    "ignored",
                )
            };
            d.push(
                Problem::warning("plan::unknown-key", message)
                    .label(key.span, label)
                    .help(format!(
                        "{}`--strict` makes this an error",
                        close.unwrap_or_default()
                    )),
            );
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
