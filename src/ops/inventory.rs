//! `plan output` and `plan ssh`: the plan's VMs as other tools reach them, from live state:
//! each VM's address (the plan's static one, else what its guest agent or DHCP reports), its
//! NICs with MACs, the user and key ssh logs in with, and the libvirt host to jump through
//! when the provider is a remote `qemu+ssh://` one.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::outcome::{Refusal, VmState};
use super::request::Request;
use super::session::{Goal, Session};
use super::view::View;
use crate::manifest::model::EntryKind;
use crate::manifest::Loaded;
use crate::plan::intent::What;
use crate::provider::AddressSource;

/// The version of `plan output --format json` documents this siteplan writes.
pub const INVENTORY_FORMAT_VERSION: &str = "1";

#[derive(Debug, Serialize)]
pub struct Inventory {
    /// `INVENTORY_FORMAT_VERSION`.
    pub format_version: &'static str,
    pub plan: String,
    pub vms: Vec<InventoryVm>,
}

#[derive(Debug, Serialize)]
pub struct InventoryVm {
    pub name: String,
    pub provider: String,
    pub state: String,
    /// Where to reach it: the plan's static address, else the guest agent's, else a lease.
    pub address: Option<IpAddr>,
    pub addresses: Vec<InventoryAddress>,
    pub nics: Vec<InventoryNic>,
    /// Who ssh logs in as: `--user`, else the image's usual user (as kcli guesses it).
    pub user: String,
    /// The private key whose public half the plan puts in the guest, when it is in ~/.ssh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The libvirt host (`[user@]host[:port]`) to jump through: a `qemu+ssh://` provider's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct InventoryAddress {
    pub ip: IpAddr,
    pub sources: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct InventoryNic {
    pub network: String,
    pub mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

/// The user a cloud image is usually logged in as, from its name or URL, as kcli guesses it;
/// `root` when nothing says.
pub fn usual_user(image: &str) -> &'static str {
    let image = image.to_ascii_lowercase();
    let has = |word: &str| image.contains(word);
    if has("rhcos") || has("fcos") || has("coreos") {
        "core"
    } else if has("centos") || has("rhel") || has("rocky") || has("alma") {
        "cloud-user"
    } else if has("ubuntu") {
        "ubuntu"
    } else if has("fedora") {
        "fedora"
    } else if has("debian") {
        "debian"
    } else if has("cirros") {
        "cirros"
    } else if has("arch") {
        "arch"
    } else if has("opensuse") || has("sles") {
        "opensuse"
    } else if has("freebsd") {
        "freebsd"
    } else {
        "root"
    }
}

/// The private key in `ssh_dir` whose `.pub` file holds one of `keys` (compared by key type
/// and data, not comment).
pub fn private_key_for(keys: &[String], ssh_dir: &Path) -> Option<PathBuf> {
    let essence = |key: &str| -> Option<String> {
        let mut parts = key.split_whitespace();
        Some(format!("{} {}", parts.next()?, parts.next()?))
    };
    let wanted: Vec<String> = keys.iter().filter_map(|k| essence(k)).collect();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(ssh_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    entries.sort();
    entries.into_iter().find_map(|public| {
        let text = std::fs::read_to_string(&public).ok()?;
        let matches = text
            .lines()
            .filter_map(essence)
            .any(|k| wanted.contains(&k));
        let private = public.with_extension("");
        (matches && private.is_file()).then_some(private)
    })
}

/// `[user@]host[:port]` of a `qemu+ssh://` URI: the host to jump through.
pub fn jump_host(endpoint: &str) -> Option<String> {
    let rest = endpoint.strip_prefix("qemu+ssh://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    (!authority.is_empty()).then(|| authority.to_string())
}

/// The plan's VMs, as they are live.
pub async fn inventory(
    request: &Request,
    loaded: &Loaded,
    user: Option<&str>,
    view: &dyn View,
) -> Result<Inventory, Refusal> {
    let session = Session::open(loaded, Goal::Converge, request, view).await?;
    // Observed first: a provider that does not answer is said, never shown as VMs missing.
    let everywhere = session.observe(view).await?;
    let rows = session.vms_seen(&everywhere).await;
    let home_ssh = dirs::home_dir().map(|h| h.join(".ssh"));
    let mut vms = Vec::new();
    for item in &session.items {
        let What::Vm(vm) = &item.what else { continue };
        let Some(site) = session
            .sites
            .iter()
            .find(|s| s.guests.iter().any(|g| g.name == item.name))
        else {
            continue;
        };
        let row = rows.iter().find(|r| r.name == item.name);
        let model = loaded.manifest.get(&item.name).and_then(|e| match &e.kind {
            EntryKind::Vm(vm) => Some(vm),
            _ => None,
        });
        let image = model.and_then(|m| m.image.as_ref()).map(|r| r.name.clone());
        // An image the plan declares is named by its entry; its URL says more about it.
        let image_url = image
            .as_ref()
            .and_then(|name| loaded.manifest.get(name))
            .and_then(|e| match &e.kind {
                EntryKind::Image(i) => i.url.clone(),
                _ => None,
            });
        let guessed = usual_user(&format!(
            "{} {}",
            image.as_deref().unwrap_or_default(),
            image_url.as_deref().unwrap_or_default()
        ));
        let keys = model.map(|m| m.keys.clone()).unwrap_or_default();
        let addresses: Vec<InventoryAddress> = row
            .map(|r| {
                r.addresses
                    .iter()
                    .map(|a| InventoryAddress {
                        ip: a.ip,
                        sources: a.sources.iter().map(|s| s.as_str()).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let best = [
            AddressSource::Static,
            AddressSource::Agent,
            AddressSource::Vmi,
            AddressSource::Public,
            AddressSource::Private,
            AddressSource::Lease,
        ]
        .iter()
        .find_map(|source| {
            row.and_then(|r| r.addresses.iter().find(|a| a.sources.contains(source)))
                .map(|a| a.ip)
        });
        let running = row.is_some_and(|r| r.state == VmState::Running);
        vms.push(InventoryVm {
            name: item.name.clone(),
            provider: site.shown(),
            state: row
                .map_or(VmState::Missing, |r| r.state)
                .as_str()
                .to_string(),
            address: best,
            addresses,
            nics: vm
                .nics
                .iter()
                .map(|n| InventoryNic {
                    network: n.network.name.clone(),
                    mac: n.mac.to_ascii_lowercase(),
                    // The plan's address, while the VM runs to hold it.
                    ip: n.address.map(|(ip, _)| ip).filter(|_| running),
                })
                .collect(),
            user: user.unwrap_or(guessed).to_string(),
            key: home_ssh
                .as_deref()
                .and_then(|dir| private_key_for(&keys, dir)),
            profile: model
                .and_then(|m| m.profile.as_ref())
                .map(|r| r.name.clone()),
            image,
            jump: jump_host(&site.opened.provider.endpoint()),
        });
    }
    Ok(Inventory {
        format_version: INVENTORY_FORMAT_VERSION,
        plan: request.name.clone(),
        vms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_user_comes_from_the_image_name_as_kcli_guesses_it() {
        assert_eq!(usual_user("debian-12-genericcloud-amd64.qcow2"), "debian");
        assert_eq!(usual_user("jammy-server-cloudimg-ubuntu"), "ubuntu");
        assert_eq!(usual_user("Fedora-Cloud-Base-40"), "fedora");
        assert_eq!(usual_user("rhcos-4.16"), "core");
        assert_eq!(usual_user("CentOS-Stream-GenericCloud-9"), "cloud-user");
        assert_eq!(usual_user("my-own-image"), "root");
    }

    #[test]
    fn the_key_is_the_private_half_of_a_public_key_the_plan_installs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("other.pub"), "ssh-ed25519 BBBB other\n").unwrap();
        std::fs::write(dir.path().join("other"), "private").unwrap();
        std::fs::write(dir.path().join("lab.pub"), "ssh-ed25519 AAAA me@laptop\n").unwrap();
        std::fs::write(dir.path().join("lab"), "private").unwrap();
        let keys = vec!["ssh-ed25519 AAAA a comment that differs".to_string()];
        assert_eq!(
            private_key_for(&keys, dir.path()),
            Some(dir.path().join("lab"))
        );
        assert_eq!(private_key_for(&["ssh-rsa CCCC".into()], dir.path()), None);
    }

    #[test]
    fn a_remote_libvirt_host_is_jumped_through() {
        assert_eq!(
            jump_host("qemu+ssh://admin@lab1:2222/system?keyfile=/k").as_deref(),
            Some("admin@lab1:2222")
        );
        assert_eq!(jump_host("qemu:///system"), None);
    }
}
