//! A VM's keys (its profile's and the kcli configuration's under them): sizes, disks, NICs,
//! files, direct boot, readiness.

use super::*;

/// Image file names kcli takes as a profile: an image already in the pool.
pub(super) const IMAGE_SUFFIXES: &[&str] = &[".qcow2", ".img", ".raw", ".iso", ".vmdk"];

/// Reads a VM, or checks a profile's keys when `lookup` is `None`.
pub(super) fn read_vm<'a>(
    r: &mut MapReader<'a>,
    lookup: Option<&Lookup<'a>>,
    d: &mut Diagnostics,
) -> Vm {
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
            let off = lookup.kcli_off;
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
                                crate::manifest::kcli::OFF_VARIABLE,
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
    let antiaffinity = r.string("antiaffinity", d).map(|s| s.value);
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
    let flavor = r.string("flavor", d).map(|c| c.value);
    let security_groups = r.refs("securitygroups", d);
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
        antiaffinity,
        rootpassword,
        reservedns,
        reserveip,
        boot,
        guestagent,
        wait,
        wait_command,
        flavor,
        security_groups,
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
pub(super) fn sensitive_registered(
    variables: BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    for (name, value) in &variables {
        if crate::secrets::is_sensitive_name(name) {
            crate::manifest::params::register_leaves(value);
        }
    }
    variables
}

/// kcli's `kernel`, `initrd` and `cmdline`: each file an absolute path on the provider's host or
/// the name of an image (declared in the plan, or a volume already in the VM's pool).
pub(super) fn read_direct_boot(r: &mut MapReader, d: &mut Diagnostics) -> Option<DirectBoot> {
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

pub(super) fn boot_file_span(file: &BootFile) -> Span {
    match file {
        BootFile::Path(p) => p.span,
        BootFile::Image(r) => r.span,
    }
}

pub(super) const DISK_BUSES: &[&str] = &["virtio", "scsi", "sata", "ide"];

pub(super) fn disk_bus(name: &str) -> DiskBus {
    match name {
        "scsi" => DiskBus::Scsi,
        "sata" => DiskBus::Sata,
        "ide" => DiskBus::Ide,
        _ => DiskBus::Virtio,
    }
}

pub(super) fn read_vm_disks(
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

pub(super) fn read_nics(node: &Node, d: &mut Diagnostics) -> Vec<Nic> {
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

pub(super) fn mac_address(mac: Located<String>, d: &mut Diagnostics) -> Option<String> {
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
pub(super) fn file_mode(node: &Node, d: &mut Diagnostics) -> Option<u32> {
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

pub(super) fn read_files(node: &Node, d: &mut Diagnostics) -> Vec<GuestFile> {
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

/// How long what waits for a VM waits for its guest to be ready, unless `waittimeout` says.
pub(super) const DEFAULT_WAIT_SECONDS: u64 = 900;

/// More vCPUs than QEMU gives one VM.
pub(super) const MAX_VCPUS: u32 = 4096;
/// More memory than any host has: 16 TiB.
pub(super) const MAX_MEMORY_MIB: u64 = 16 << 20;
/// A larger disk than any pool holds: 1 PiB.
pub(super) const MAX_DISK_BYTES: u64 = 1 << 50;
