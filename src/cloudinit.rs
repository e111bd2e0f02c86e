//! cloud-init NoCloud seeds, generated in Rust: user-data, meta-data and network-config in a FAT
//! filesystem labelled `cidata`, which cloud-init finds on any attached disk.
//!
//! Pure: bytes in, bytes out. The seed holds the root password when one is set (the guest needs
//! it), so callers record only its digest.

use std::io::{Cursor, Read, Write};
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Size of the seed filesystem. FAT12 needs no more for a few KiB of config.
pub const SEED_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeedInput {
    pub hostname: String,
    pub domain: Option<String>,
    pub keys: Vec<String>,
    pub cmds: Vec<String>,
    /// Scripts as (file name, content), run in order after `cmds`.
    pub scripts: Vec<(String, String)>,
    pub files: Vec<SeedFile>,
    pub root_password: Option<String>,
    pub nics: Vec<SeedNic>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeedFile {
    pub path: String,
    pub content: String,
    pub owner: Option<String>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeedNic {
    pub mac: String,
    /// Static address and prefix; `None` means DHCP.
    pub address: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub dns: Option<IpAddr>,
    /// Leave the NIC alone (kcli's `noconf`).
    pub unconfigured: bool,
}

/// The three documents of a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedDocuments {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

#[derive(Serialize)]
struct UserData<'a> {
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fqdn: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ssh_authorized_keys: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    chpasswd: Option<Chpasswd<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh_pwauth: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    write_files: Vec<WriteFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runcmd: Vec<String>,
}

#[derive(Serialize)]
struct Chpasswd<'a> {
    expire: bool,
    users: [ChpasswdUser<'a>; 1],
}

#[derive(Serialize)]
struct ChpasswdUser<'a> {
    name: &'a str,
    password: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<String>,
}

/// Where scripts are written in the guest before they run.
const SCRIPT_DIR: &str = "/var/lib/siteplan/scripts";

/// The documents as a reviewer may see them: the user-data and network-config of `input` (the
/// seed with each templated secret already shown as `(sensitive)`), with the root password and
/// every private key block replaced by `(sensitive)` too, before the YAML indents them.
pub fn review_text(input: &SeedInput) -> String {
    let hide = crate::secrets::hide_private_keys;
    let shown = SeedInput {
        root_password: input.root_password.as_ref().map(|_| SENSITIVE.to_string()),
        cmds: input.cmds.iter().map(|c| hide(c)).collect(),
        scripts: input
            .scripts
            .iter()
            .map(|(name, content)| (name.clone(), hide(content)))
            .collect(),
        files: input
            .files
            .iter()
            .map(|f| SeedFile {
                content: hide(&f.content),
                ..f.clone()
            })
            .collect(),
        ..input.clone()
    };
    let docs = documents(&shown);
    crate::secrets::scrub(&format!(
        "# user-data\n{}\n# network-config\n{}",
        docs.user_data.trim_end(),
        docs.network_config.trim_end()
    ))
}

use crate::secrets::SENSITIVE;

pub fn documents(input: &SeedInput) -> SeedDocuments {
    let mut write_files: Vec<WriteFile> = input
        .files
        .iter()
        .map(|f| WriteFile {
            path: f.path.clone(),
            content: f.content.clone(),
            owner: f.owner.clone(),
            permissions: f.mode.map(|m| format!("{m:#o}").replace("0o", "0")),
        })
        .collect();
    let mut runcmd = input.cmds.clone();
    for (name, content) in &input.scripts {
        let path = format!("{SCRIPT_DIR}/{name}");
        write_files.push(WriteFile {
            path: path.clone(),
            content: content.clone(),
            owner: None,
            permissions: Some("0755".into()),
        });
        runcmd.push(path);
    }
    let user_data = UserData {
        hostname: &input.hostname,
        fqdn: input
            .domain
            .as_ref()
            .map(|d| format!("{}.{d}", input.hostname)),
        ssh_authorized_keys: &input.keys,
        chpasswd: input.root_password.as_deref().map(|password| Chpasswd {
            expire: false,
            users: [ChpasswdUser {
                name: "root",
                password,
                kind: "text",
            }],
        }),
        ssh_pwauth: input.root_password.as_ref().map(|_| true),
        write_files,
        runcmd,
    };
    let user_data = format!(
        "#cloud-config\n{}",
        serde_norway::to_string(&user_data).unwrap_or_default()
    );

    let network_config = network_config(&input.nics);
    // A new instance id makes cloud-init apply a changed seed on the next boot.
    let digest = hex::encode(Sha256::digest(format!("{user_data}\n{network_config}")));
    let meta_data = format!(
        "instance-id: {}-{}\nlocal-hostname: {}\n",
        input.hostname,
        &digest[..12],
        input.hostname
    );
    SeedDocuments {
        user_data,
        meta_data,
        network_config,
    }
}

fn network_config(nics: &[SeedNic]) -> String {
    let mut ethernets = serde_json::Map::new();
    for (i, nic) in nics.iter().enumerate().filter(|(_, n)| !n.unconfigured) {
        let mut eth = serde_json::Map::new();
        eth.insert("match".into(), serde_json::json!({ "macaddress": nic.mac }));
        match nic.address {
            Some((ip, prefix)) => {
                eth.insert(
                    "addresses".into(),
                    serde_json::json!([format!("{ip}/{prefix}")]),
                );
                if let Some(gw) = nic.gateway {
                    eth.insert(
                        "routes".into(),
                        serde_json::json!([{ "to": "default", "via": gw.to_string() }]),
                    );
                }
            }
            None => {
                eth.insert("dhcp4".into(), true.into());
            }
        }
        if let Some(dns) = nic.dns {
            eth.insert(
                "nameservers".into(),
                serde_json::json!({ "addresses": [dns.to_string()] }),
            );
        }
        ethernets.insert(format!("nic{i}"), eth.into());
    }
    let doc = serde_json::json!({ "version": 2, "ethernets": ethernets });
    serde_norway::to_string(&doc).unwrap_or_default()
}

/// Packs the documents into a FAT image labelled `cidata`.
pub fn seed_image(docs: &SeedDocuments) -> std::io::Result<Vec<u8>> {
    let mut disk = Cursor::new(vec![0u8; SEED_BYTES]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new().volume_label(*b"cidata     "),
    )?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
        for (name, content) in [
            ("user-data", &docs.user_data),
            ("meta-data", &docs.meta_data),
            ("network-config", &docs.network_config),
        ] {
            let mut file = fs.root_dir().create_file(name)?;
            file.truncate()?;
            file.write_all(content.as_bytes())?;
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

/// Reads one file back out of a seed image (for tests and `plan` inspection).
pub fn read_seed_file(image: &[u8], name: &str) -> std::io::Result<String> {
    let mut disk = Cursor::new(image.to_vec());
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
    let mut content = String::new();
    fs.root_dir()
        .open_file(name)?
        .read_to_string(&mut content)?;
    Ok(content)
}

/// The volume label of a seed image.
pub fn seed_label(image: &[u8]) -> std::io::Result<String> {
    let mut disk = Cursor::new(image.to_vec());
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
    Ok(fs.volume_label().trim_end().to_string())
}

/// What made `docs`, read back: the input that `documents` turns into exactly these documents,
/// or `None` when no input does (a seed another tool wrote, or one edited by hand). Scripts come
/// back as the files and commands they were written as, which make the same documents.
pub fn recover(docs: &SeedDocuments) -> Option<SeedInput> {
    #[derive(serde::Deserialize)]
    struct ReadUserData {
        hostname: String,
        fqdn: Option<String>,
        #[serde(default)]
        ssh_authorized_keys: Vec<String>,
        chpasswd: Option<ReadChpasswd>,
        #[serde(default)]
        write_files: Vec<ReadFile>,
        #[serde(default)]
        runcmd: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct ReadChpasswd {
        users: Vec<ReadUser>,
    }
    #[derive(serde::Deserialize)]
    struct ReadUser {
        password: String,
    }
    #[derive(serde::Deserialize)]
    struct ReadFile {
        path: String,
        content: String,
        owner: Option<String>,
        permissions: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ReadNetwork {
        #[serde(default)]
        ethernets: std::collections::BTreeMap<String, ReadEthernet>,
    }
    #[derive(serde::Deserialize)]
    struct ReadEthernet {
        #[serde(rename = "match")]
        matching: ReadMatch,
        #[serde(default)]
        addresses: Vec<String>,
        #[serde(default)]
        routes: Vec<ReadRoute>,
        nameservers: Option<ReadNameservers>,
    }
    #[derive(serde::Deserialize)]
    struct ReadMatch {
        macaddress: String,
    }
    #[derive(serde::Deserialize)]
    struct ReadRoute {
        via: IpAddr,
    }
    #[derive(serde::Deserialize)]
    struct ReadNameservers {
        addresses: Vec<IpAddr>,
    }

    let user: ReadUserData =
        serde_norway::from_str(docs.user_data.strip_prefix("#cloud-config\n")?).ok()?;
    let network: ReadNetwork = serde_norway::from_str(&docs.network_config).ok()?;
    let domain = match &user.fqdn {
        Some(fqdn) => Some(
            fqdn.strip_prefix(&format!("{}.", user.hostname))?
                .to_string(),
        ),
        None => None,
    };
    let mut nics = Vec::new();
    for (key, eth) in &network.ethernets {
        let index: usize = key.strip_prefix("nic")?.parse().ok()?;
        let address = match eth.addresses.as_slice() {
            [] => None,
            [one] => {
                let net: ipnet::IpNet = one.parse().ok()?;
                Some((net.addr(), net.prefix_len()))
            }
            _ => return None,
        };
        nics.push((
            index,
            SeedNic {
                mac: eth.matching.macaddress.clone(),
                address,
                gateway: eth.routes.first().map(|r| r.via),
                dns: eth
                    .nameservers
                    .as_ref()
                    .and_then(|n| n.addresses.first().copied()),
                unconfigured: false,
            },
        ));
    }
    nics.sort_by_key(|(index, _)| *index);
    // A NIC left alone has no entry, but keeps its index: the gaps are those NICs. Their MACs
    // are not in the seed; the caller knows them from the VM.
    let mut all = Vec::new();
    for (index, nic) in nics {
        while all.len() < index {
            all.push(SeedNic {
                mac: String::new(),
                address: None,
                gateway: None,
                dns: None,
                unconfigured: true,
            });
        }
        all.push(nic);
    }
    let input = SeedInput {
        hostname: user.hostname,
        domain,
        keys: user.ssh_authorized_keys,
        cmds: user.runcmd,
        scripts: Vec::new(),
        files: user
            .write_files
            .into_iter()
            .map(|f| {
                Some(SeedFile {
                    path: f.path,
                    content: f.content,
                    owner: f.owner,
                    mode: match f.permissions {
                        Some(p) => Some(u32::from_str_radix(&p, 8).ok()?),
                        None => None,
                    },
                })
            })
            .collect::<Option<Vec<_>>>()?,
        root_password: match user.chpasswd {
            Some(c) => Some(c.users.into_iter().next()?.password),
            None => None,
        },
        nics: all,
    };
    (documents(&input) == *docs).then_some(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SeedInput {
        SeedInput {
            hostname: "web1".into(),
            domain: Some("lab.local".into()),
            keys: vec!["ssh-ed25519 AAAA test".into()],
            cmds: vec!["echo hi".into()],
            scripts: vec![("setup.sh".into(), "#!/bin/sh\ntrue\n".into())],
            files: vec![SeedFile {
                path: "/etc/motd".into(),
                content: "hello\n".into(),
                owner: Some("root:root".into()),
                mode: Some(0o644),
            }],
            root_password: Some("hunter2".into()),
            nics: vec![
                SeedNic {
                    mac: "52:54:00:00:00:01".into(),
                    address: Some(("192.168.150.11".parse().unwrap(), 24)),
                    gateway: Some("192.168.150.1".parse().unwrap()),
                    dns: None,
                    unconfigured: false,
                },
                SeedNic {
                    mac: "52:54:00:00:00:02".into(),
                    address: None,
                    gateway: None,
                    dns: None,
                    unconfigured: false,
                },
            ],
        }
    }

    #[test]
    fn the_review_text_hides_the_password_but_shows_the_rest() {
        let text = review_text(&input());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("password: (sensitive)"), "{text}");
        assert!(
            text.contains("echo hi") && text.contains("192.168.150.11/24"),
            "{text}"
        );
    }

    #[test]
    fn user_data_and_network_config() {
        let docs = documents(&input());
        insta::assert_snapshot!("user_data", docs.user_data);
        insta::assert_snapshot!("network_config", docs.network_config);
        assert!(docs.meta_data.starts_with("instance-id: web1-"));
    }

    #[test]
    fn seed_image_reads_back() {
        let docs = documents(&input());
        let image = seed_image(&docs).unwrap();
        assert_eq!(seed_label(&image).unwrap(), "cidata");
        assert_eq!(read_seed_file(&image, "user-data").unwrap(), docs.user_data);
        assert_eq!(
            read_seed_file(&image, "network-config").unwrap(),
            docs.network_config
        );
        assert_eq!(read_seed_file(&image, "meta-data").unwrap(), docs.meta_data);
    }

    #[test]
    fn changing_the_seed_changes_the_instance_id() {
        let a = documents(&input());
        let mut changed = input();
        changed.cmds.push("echo more".into());
        assert_ne!(a.meta_data, documents(&changed).meta_data);
    }

    #[test]
    fn a_seed_reads_back_as_what_made_it() {
        let docs = documents(&input());
        let recovered = recover(&docs).expect("siteplan's own seed");
        assert_eq!(documents(&recovered), docs);
        assert_eq!(recovered.root_password.as_deref(), Some("hunter2"));
        assert_eq!(recovered.domain.as_deref(), Some("lab.local"));
        // The script came back as the file and the command it was written as.
        assert!(recovered
            .cmds
            .iter()
            .any(|c| c == "/var/lib/siteplan/scripts/setup.sh"));
        let mut edited = docs.clone();
        edited.user_data.push_str("bootcmd: [reboot]\n");
        assert!(recover(&edited).is_none(), "a seed siteplan did not write");
        let mut other = docs;
        other.meta_data = "instance-id: someone-else\n".into();
        assert!(recover(&other).is_none());
    }
}
