//! One VM's part of a lab snapshot on libvirt: an internal snapshot (the qcow2 disks, and the
//! memory when the VM runs), named as the lab snapshot, whose description carries its mark
//! (`provider::snapshot`). libvirt keeps the domain's definition in each snapshot, so a revert
//! brings the definition back too, with the ownership mark it had then.
//!
//! What libvirt cannot keep in an internal snapshot is refused before anything is paused: UEFI
//! firmware (its NVRAM lives outside the disks) and writable disks that are not qcow2.

use super::LibvirtProvider;
use super::Touched;
use async_trait::async_trait;
use virt::domain::{Domain, DomainState};
use virt::sys;

use super::xml;
use super::{err, Inner};
use crate::plan::model::spec::{ResourceId, Spec, VmSpec};
use crate::provider::capability;
use crate::provider::crashpoint;
use crate::provider::snapshot::{FoundSnapshots, SnapshotMark, VmSnapshot};
use crate::provider::{Owner, ProviderError};

/// A disk of a domain as its snapshot needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Disk {
    /// The target device (`vda`), which names the disk in a snapshot's XML.
    dev: String,
    /// The driver's format (`qcow2`, `raw`), if given.
    format: Option<String>,
    readonly: bool,
    /// `(pool, volume)` for a volume disk.
    volume: Option<(String, String)>,
    /// A file path for a file disk.
    file: Option<String>,
}

/// Whether a domain boots UEFI firmware: as its definition says, or (the test driver's
/// domains have no firmware) as what it was made from says.
fn boots_uefi(domain_xml: &str) -> bool {
    xml::parse_domain(domain_xml, false, false).is_ok_and(|info| {
        info.spec.uefi
            || info
                .mark
                .is_some_and(|mark| matches!(mark.spec, Spec::Vm(vm) if vm.uefi))
    })
}

/// The disks of a domain.
fn disks(domain_xml: &str) -> Result<Vec<Disk>, String> {
    let doc = roxmltree::Document::parse(domain_xml).map_err(|e| e.to_string())?;
    let disks = doc
        .root_element()
        .descendants()
        .filter(|n| n.has_tag_name("disk") && n.attribute("device") != Some("cdrom"))
        .map(|disk| {
            let child = |name: &str| disk.children().find(|n| n.has_tag_name(name));
            let source = child("source");
            Disk {
                dev: child("target")
                    .and_then(|t| t.attribute("dev"))
                    .unwrap_or_default()
                    .to_string(),
                format: child("driver")
                    .and_then(|d| d.attribute("type"))
                    .map(str::to_string),
                readonly: child("readonly").is_some(),
                volume: source.and_then(|s| {
                    Some((
                        s.attribute("pool")?.to_string(),
                        s.attribute("volume")?.to_string(),
                    ))
                }),
                file: source
                    .and_then(|s| s.attribute("file").or(s.attribute("dev")))
                    .map(str::to_string),
            }
        })
        .collect();
    Ok(disks)
}

impl Disk {
    fn shown(&self) -> String {
        match (&self.volume, &self.file) {
            (Some((pool, volume)), _) => format!("{} ({pool}/{volume})", self.dev),
            (None, Some(file)) => format!("{} ({file})", self.dev),
            _ => self.dev.clone(),
        }
    }
}

/// The domain's live definition when it runs, else its saved one.
fn current_xml(domain: &Domain, id: &ResourceId) -> Result<String, ProviderError> {
    let flags = if domain.is_active().unwrap_or(false) {
        0
    } else {
        sys::VIR_DOMAIN_XML_INACTIVE
    };
    domain
        .xml_desc(flags)
        .map_err(|e| ProviderError::backend(id, err(e)))
}

/// Whether a domain runs (not paused, not off).
fn running(domain: &Domain) -> bool {
    matches!(domain.state(), Ok((state, _)) if state.is(DomainState::Running))
}

impl Inner {
    /// Why `vm` cannot be in a lab snapshot, if it cannot.
    pub(super) fn snapshot_refusal(
        &self,
        vm: &str,
        owner: &Owner,
    ) -> Result<Option<String>, ProviderError> {
        let id = ResourceId::vm(vm);
        let domain = self.owned_domain(vm, owner)?;
        let text = current_xml(&domain, &id)?;
        if boots_uefi(&text) {
            return Ok(Some(format!(
                "{id} boots UEFI firmware, whose NVRAM libvirt cannot keep in an internal \
                 snapshot"
            )));
        }
        let other: Vec<String> = disks(&text)
            .map_err(|e| ProviderError::backend(&id, e))?
            .iter()
            // Read-only disks (the cloud-init seed) are left to libvirt, which leaves them out.
            .filter(|d| !d.readonly && d.format.as_deref() != Some("qcow2"))
            .map(|d| {
                format!(
                    "{} is {}",
                    d.shown(),
                    d.format.as_deref().unwrap_or("of no declared format")
                )
            })
            .collect();
        if !other.is_empty() {
            return Ok(Some(format!(
                "{id}: internal snapshots need qcow2 disks, and disk {}",
                other.join(", disk ")
            )));
        }
        Ok(None)
    }

    pub(super) fn pause(&self, vm: &str, owner: &Owner) -> Result<bool, ProviderError> {
        let domain = self.owned_domain(vm, owner)?;
        if !running(&domain) {
            return Ok(false);
        }
        domain
            .suspend()
            .map_err(|e| ProviderError::backend(&ResourceId::vm(vm), err(e)))?;
        Ok(true)
    }

    pub(super) fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError> {
        let domain = self.owned_domain(vm, owner)?;
        match domain.state() {
            Ok((state, _)) if state.is(DomainState::Paused) => domain
                .resume()
                .map_err(|e| ProviderError::backend(&ResourceId::vm(vm), err(e))),
            _ => Ok(()),
        }
    }

    pub(super) fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::vm(vm);
        let domain = self.owned_domain(vm, owner)?;
        let text = snapshot_xml(&mark.name, &mark.description())
            .map_err(|e| ProviderError::backend(&id, e))?;
        domain
            .create_snapshot_xml(&text, sys::VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        // After the snapshot is made, so that a test sees it removed again.
        if let Some(message) = crashpoint::injected_failure(&format!("snapshot/{vm}")) {
            return Err(ProviderError::backend(&id, message));
        }
        Ok(())
    }

    /// The snapshots of every domain `plan` owns: lab snapshots' (marked), and others.
    pub(super) fn snapshots(&self, plan: &str) -> Result<FoundSnapshots, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::Connection(err(e));
        let (mut marked, mut others) = (Vec::new(), Vec::new());
        for domain in self.conn.list_all_domains(0).map_err(fail)? {
            let Ok(name) = domain.name() else { continue };
            let Ok(defined) = domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE) else {
                continue;
            };
            let owned = xml::parse_domain(&defined, false, false)
                .ok()
                .and_then(|info| info.mark)
                .is_some_and(|m| m.plan == plan);
            if !owned {
                continue;
            }
            for snapshot in domain.list_all_snapshots(0).unwrap_or_default() {
                let Ok(text) = snapshot.xml_desc(0) else {
                    continue;
                };
                match read_snapshot(&text) {
                    Some((mark, definition)) if mark.plan == plan => marked.push(VmSnapshot {
                        vm: name.clone(),
                        mark,
                        definition,
                    }),
                    _ => others.push((name.clone(), snapshot.name().unwrap_or_default())),
                }
            }
        }
        Ok(FoundSnapshots { marked, others })
    }

    pub(super) fn revert_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::vm(vm);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let domain = self.owned_domain(vm, owner)?;
        let snapshot = Domain::lookup_snapshot_by_name(&domain, name, 0).map_err(fail)?;
        let text = snapshot.xml_desc(0).map_err(fail)?;
        let mark = read_snapshot(&text).map(|(m, _)| m);
        check_snapshot_owner(&id, name, mark.as_ref(), owner)?;
        // A snapshot of a running VM comes back paused; an off one, off (the flag would
        // start it).
        let paused = if snapshot_ran(&text) {
            sys::VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        } else {
            0
        };
        let revert = |flags: u32| {
            // Starting QEMU again can meet EAGAIN (libvirtd's loading of the VM's cgroup device
            // filter interrupted): what "try again" means, once, after a moment.
            snapshot.revert(flags).or_else(|e| {
                if !e.message().contains("Resource temporarily unavailable") {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
                snapshot.revert(flags)
            })
        };
        match revert(paused) {
            Ok(()) => Ok(()),
            // The definition changed since in a way libvirt calls risky (devices, memory):
            // the person asked for the snapshot's, so it is forced.
            Err(e) if e.code().is(virt::error::ErrorNumber::SnapshotRevertRisky) => {
                revert(paused | sys::VIR_DOMAIN_SNAPSHOT_REVERT_FORCE).map_err(fail)
            }
            Err(e) => Err(fail(e)),
        }
    }

    pub(super) fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError> {
        let id = ResourceId::vm(vm);
        let domain = self.owned_domain(vm, owner)?;
        let Ok(snapshot) = Domain::lookup_snapshot_by_name(&domain, name, 0) else {
            return Ok(false);
        };
        let mark = snapshot
            .xml_desc(0)
            .ok()
            .and_then(|t| read_snapshot(t.as_str()))
            .map(|(m, _)| m);
        check_snapshot_owner(&id, name, mark.as_ref(), owner)?;
        snapshot
            .delete(0)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        Ok(true)
    }
}

/// Deletes every snapshot of a domain that is being deleted (the domain is the plan's, and
/// its snapshots go with it), with their data while its disks are still there; only their
/// records if libvirt cannot delete the data.
pub(super) fn delete_all(domain: &Domain) {
    for root in domain
        .list_all_snapshots(sys::VIR_DOMAIN_SNAPSHOT_LIST_ROOTS)
        .unwrap_or_default()
    {
        if root
            .delete(sys::VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
            .is_err()
        {
            let _ = root.delete(
                sys::VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN
                    | sys::VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY,
            );
        }
    }
}

fn check_snapshot_owner(
    id: &ResourceId,
    name: &str,
    mark: Option<&SnapshotMark>,
    owner: &Owner,
) -> Result<(), ProviderError> {
    match mark {
        Some(m) if m.plan == owner.plan => Ok(()),
        _ => Err(ProviderError::backend(
            id,
            format!(
                "snapshot `{name}` was not taken by `plan snapshot create` for plan `{}`; \
                 siteplan reverts and deletes only the lab snapshots it took",
                owner.plan
            ),
        )),
    }
}

/// Whether a snapshot holds a VM that ran (running or paused when it was taken).
fn snapshot_ran(text: &str) -> bool {
    roxmltree::Document::parse(text).is_ok_and(|doc| {
        doc.root_element()
            .children()
            .find(|n| n.has_tag_name("state"))
            .and_then(|n| n.text())
            .is_some_and(|state| matches!(state.trim(), "running" | "paused" | "blocked"))
    })
}

/// Whether a snapshot's XML carries a lab snapshot's mark.
pub(super) fn is_lab_snapshot(text: &str) -> bool {
    read_snapshot(text).is_some()
}

/// A snapshot's mark and the VM's definition then (as siteplan made it), from its XML.
fn read_snapshot(text: &str) -> Option<(SnapshotMark, Option<VmSpec>)> {
    let doc = roxmltree::Document::parse(text).ok()?;
    let root = doc.root_element();
    let description = root
        .children()
        .find(|n| n.has_tag_name("description"))?
        .text()?;
    let mark = SnapshotMark::from_description(description)?;
    let definition = root
        .children()
        .find(|n| n.has_tag_name("domain"))
        .and_then(|d| xml::parse_domain(&text[d.range()], false, false).ok())
        .and_then(|info| info.mark)
        .and_then(|m| match m.spec {
            Spec::Vm(vm) => Some(vm),
            _ => None,
        });
    Some((mark, definition))
}

/// `<domainsnapshot>` for a lab snapshot: its name and its mark. libvirt decides the rest:
/// internal, every writable disk, and the memory when the VM runs (it refuses to leave a
/// writable disk out of an internal snapshot).
fn snapshot_xml(name: &str, description: &str) -> Result<String, String> {
    use quick_xml::events::BytesText;
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    w.create_element("domainsnapshot")
        .write_inner_content(|w| {
            w.create_element("name")
                .write_text_content(BytesText::new(name))?;
            w.create_element("description")
                .write_text_content(BytesText::new(description))?;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    String::from_utf8(w.into_inner()).map_err(|e| e.to_string())
}

#[async_trait]
impl capability::LabSnapshots for LibvirtProvider {
    async fn snapshot_refusals(
        &self,
        vms: &[String],
        owner: &Owner,
    ) -> Result<Vec<String>, ProviderError> {
        let (vms, owner) = (vms.to_vec(), owner.clone());
        self.blocking(move |inner| {
            let mut refusals = Vec::new();
            for vm in &vms {
                refusals.extend(inner.snapshot_refusal(vm, &owner)?);
            }
            Ok(refusals)
        })
        .await
    }

    async fn pause(&self, vm: &str, owner: &Owner) -> Result<bool, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.pause(&vm, &owner)),
        )
        .await
    }

    async fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.resume(&vm, &owner)),
        )
        .await
    }

    async fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, mark, owner) = (vm.to_string(), mark.clone(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.create_snapshot(&vm, &mark, &owner)),
        )
        .await
    }

    async fn snapshots(&self, plan: &str) -> Result<FoundSnapshots, ProviderError> {
        let plan = plan.to_string();
        self.blocking(move |inner| inner.snapshots(&plan)).await
    }

    async fn revert_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, name, owner) = (vm.to_string(), name.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.revert_snapshot(&vm, &name, &owner)),
        )
        .await
    }

    async fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, name, owner) = (vm.to_string(), name.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.delete_snapshot(&vm, &name, &owner)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = r#"<domain type='kvm'>
  <name>vm1</name>
  <os><type>hvm</type></os>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='lab' volume='vm1_0.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='lab' volume='shared.img'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/x/seed.img'/>
      <target dev='vdz' bus='virtio'/>
      <readonly/>
    </disk>
  </devices>
</domain>"#;

    #[test]
    fn disks_are_read_with_what_decides_whether_they_can_be_snapshotted() {
        assert!(!boots_uefi(DOMAIN));
        let shown: Vec<(String, Option<String>, bool)> = disks(DOMAIN)
            .expect("parses")
            .iter()
            .map(|d| (d.shown(), d.format.clone(), d.readonly))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "vda (lab/vm1_0.img)".to_string(),
                    Some("qcow2".to_string()),
                    false
                ),
                (
                    "vdb (lab/shared.img)".to_string(),
                    Some("qcow2".to_string()),
                    false
                ),
                (
                    "vdz (/var/lib/x/seed.img)".to_string(),
                    Some("raw".to_string()),
                    true
                ),
            ]
        );
        let text = snapshot_xml("before", "siteplan lab snapshot {}").expect("xml");
        insta::assert_snapshot!(text, @r#"
        <domainsnapshot>
          <name>before</name>
          <description>siteplan lab snapshot {}</description>
        </domainsnapshot>
        "#);
    }

    #[test]
    fn uefi_is_seen_in_either_form() {
        for os in [
            "<os firmware='efi'><type>hvm</type></os>",
            "<os><type>hvm</type><loader readonly='yes' type='pflash'>/x.fd</loader></os>",
        ] {
            let text = format!("<domain><name>x</name>{os}<devices/></domain>");
            assert!(boots_uefi(&text), "{os}");
        }
    }

    #[test]
    fn a_snapshot_tells_its_mark_and_the_definition_it_kept() {
        let mark = SnapshotMark {
            plan: "lab".into(),
            name: "before".into(),
            created: "2026-11-24T21:00:00Z".into(),
            vms: vec!["vm1".into()],
            run: "r".into(),
            was_running: true,
        };
        let text = format!(
            "<domainsnapshot><name>before</name><description>{}</description>{DOMAIN}</domainsnapshot>",
            quick_xml::escape::escape(mark.description().as_str())
        );
        let (read, definition) = read_snapshot(&text).expect("a lab snapshot");
        assert_eq!(read, mark);
        // That domain carries no owner mark, so no definition siteplan made.
        assert_eq!(definition, None);
        assert_eq!(
            read_snapshot("<domainsnapshot><name>x</name></domainsnapshot>"),
            None
        );
    }
}
