//! What an update keeps of a definition: siteplan writes a domain or network whole from its
//! spec, and the spec holds only what a plan says. Everything else the old definition had (a
//! CD-ROM, a SPICE display, a sound card, a description, another tool's metadata, an IPv6
//! range) is not the plan's business, so a redefinition carries it over as it was. Without
//! this, adopting a VM made by hand would quietly take its display away at its next boot,
//! while the diff said only its mark changed.

use std::ops::Range;

/// Top-level domain elements that follow from what siteplan writes, so the old ones are not
/// kept beside them: the balloon's size follows `memory`, the vCPU layout follows `vcpu`.
const DOMAIN_DERIVED: &[&str] = &["currentMemory", "maxMemory", "vcpus"];

/// Devices siteplan writes only where the old definition had none: a VM's console and
/// display are the person's choice once they exist.
const DEVICES_KEPT_INSTEAD: &[&str] = &["graphics", "serial", "console"];

/// `new` (a domain siteplan wrote) with what `old` had that siteplan does not manage.
pub fn domain(new: &str, old: &str, guest_agent_port: &str) -> Result<String, String> {
    let (old_doc, new_doc) = (parse(old)?, parse(new)?);
    let (old_root, new_root) = (old_doc.root_element(), new_doc.root_element());
    let mut edits = Edits::default();

    // Top level: what siteplan writes no element of.
    let written: Vec<&str> = elements(new_root).map(|e| e.tag_name().name()).collect();
    let end_of_root = closing_tag_start(new, new_root);
    for element in elements(old_root) {
        let tag = element.tag_name().name();
        if element.tag_name().namespace().is_none()
            && !written.contains(&tag)
            && !DOMAIN_DERIVED.contains(&tag)
        {
            edits.insert(end_of_root, &old[element.range()]);
        }
    }
    metadata(new, new_root, old, old_root, &mut edits);

    // Devices: what siteplan does not model, and the console and display the VM has.
    if let (Some(new_devices), Some(old_devices)) =
        (child(new_root, "devices"), child(old_root, "devices"))
    {
        let end = closing_tag_start(new, new_devices);
        for tag in DEVICES_KEPT_INSTEAD {
            if elements(old_devices).any(|d| d.has_tag_name(*tag)) {
                for written in elements(new_devices).filter(|d| d.has_tag_name(*tag)) {
                    edits.remove(written.range());
                }
            }
        }
        for device in elements(old_devices) {
            let managed = match device.tag_name().name() {
                "disk" => device.attribute("device").unwrap_or("disk") == "disk",
                "interface" => true,
                "channel" => child(device, "target")
                    .and_then(|t| t.attribute("name"))
                    .is_some_and(|name| name == guest_agent_port),
                _ => false,
            };
            if !managed {
                edits.insert(end, &old[device.range()]);
            }
        }
    }
    Ok(edits.apply(new))
}

/// `new` (a network siteplan wrote) with what `old` had that siteplan does not manage: its
/// other elements (port groups, routes, the bridge's MAC), its IPv6 ranges when the plan's is
/// IPv4, and another tool's metadata.
pub fn network(new: &str, old: &str) -> Result<String, String> {
    let (old_doc, new_doc) = (parse(old)?, parse(new)?);
    let (old_root, new_root) = (old_doc.root_element(), new_doc.root_element());
    let mut edits = Edits::default();
    let written: Vec<&str> = elements(new_root).map(|e| e.tag_name().name()).collect();
    let new_family = |e: roxmltree::Node| e.attribute("family").unwrap_or("ipv4").to_string();
    let families: Vec<String> = elements(new_root)
        .filter(|e| e.has_tag_name("ip"))
        .map(new_family)
        .collect();
    let end_of_root = closing_tag_start(new, new_root);
    for element in elements(old_root) {
        let tag = element.tag_name().name();
        let kept = match tag {
            "ip" => !families.contains(&new_family(element)),
            // libvirt gives these again from the name and the definition.
            "uuid" => false,
            _ => !written.contains(&tag),
        };
        if kept && element.tag_name().namespace().is_none() {
            edits.insert(end_of_root, &old[element.range()]);
        }
    }
    metadata(new, new_root, old, old_root, &mut edits);
    Ok(edits.apply(new))
}

/// Another tool's metadata (libosinfo's, a person's) goes into the new `<metadata>`; siteplan's
/// mark and kcli's plan are written anew.
fn metadata(
    new: &str,
    new_root: roxmltree::Node,
    old: &str,
    old_root: roxmltree::Node,
    edits: &mut Edits,
) {
    let (Some(old_metadata), Some(new_metadata)) =
        (child(old_root, "metadata"), child(new_root, "metadata"))
    else {
        return;
    };
    let end = closing_tag_start(new, new_metadata);
    for element in elements(old_metadata) {
        let ns = element.tag_name().namespace();
        if ns != Some(super::OWNER_NS) && ns != Some(super::KCLI_NS) {
            edits.insert(end, &old[element.range()]);
        }
    }
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, String> {
    roxmltree::Document::parse(xml).map_err(|e| format!("cannot read libvirt's XML: {e}"))
}

fn elements<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(|c| c.is_element())
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    elements(node).find(|c| c.has_tag_name(name))
}

/// Where `element`'s closing tag starts in `text`: what goes inside it goes there.
fn closing_tag_start(text: &str, element: roxmltree::Node) -> usize {
    let range = element.range();
    text[range.clone()]
        .rfind("</")
        .map_or(range.end, |at| range.start + at)
}

/// Text to insert and ranges to remove, applied at once.
#[derive(Default)]
struct Edits {
    inserts: Vec<(usize, String)>,
    removals: Vec<Range<usize>>,
}

impl Edits {
    fn insert(&mut self, at: usize, text: &str) {
        self.inserts.push((at, text.to_string()));
    }

    fn remove(&mut self, range: Range<usize>) {
        self.removals.push(range);
    }

    fn apply(mut self, text: &str) -> String {
        // In order of position, inserts at one place in the order they were asked for.
        self.inserts.sort_by_key(|(at, _)| *at);
        self.removals.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut inserts = self.inserts.into_iter().peekable();
        let mut removals = self.removals.into_iter().peekable();
        loop {
            let next_insert = inserts.peek().map(|(i, _)| *i);
            let next_removal = removals.peek().map(|r| r.start);
            match (next_insert, next_removal) {
                (Some(i), r) if r.is_none_or(|r| i <= r) => {
                    let (i, inserted) = inserts.next().unwrap_or_default();
                    out.push_str(&text[at..i.max(at)]);
                    at = at.max(i);
                    out.push_str(&inserted);
                }
                (_, Some(_)) => {
                    let range = removals.next().unwrap_or_default();
                    out.push_str(&text[at..range.start.max(at)]);
                    at = at.max(range.end);
                }
                _ => break,
            }
        }
        out.push_str(&text[at..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "<domain type='kvm'><name>web1</name><description>by hand</description>\
        <metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>\
        <libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo></metadata>\
        <memory unit='KiB'>262144</memory><currentMemory unit='KiB'>131072</currentMemory>\
        <vcpu>1</vcpu><on_reboot>destroy</on_reboot><devices>\
        <disk type='file' device='disk'><source file='/x.qcow2'/><target dev='vda'/></disk>\
        <disk type='file' device='cdrom'><source file='/x.iso'/><target dev='hdc' bus='ide'/></disk>\
        <interface type='network'><source network='n'/></interface>\
        <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
        <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>\
        <graphics type='spice'/><video><model type='qxl'/></video></devices></domain>";

    const NEW: &str = "<domain type='kvm'><name>web1</name><metadata><siteplan:owner \
        xmlns:siteplan='urn:siteplan:owner:1' plan='lab'>{}</siteplan:owner></metadata>\
        <memory unit='MiB'>512</memory><vcpu>2</vcpu><devices>\
        <disk type='volume' device='disk'><source pool='p' volume='v'/></disk>\
        <interface type='network'><source network='n'/></interface>\
        <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
        <serial type='pty'/><graphics type='vnc'/></devices></domain>";

    #[test]
    fn what_siteplan_does_not_manage_is_kept_and_what_it_does_is_written_anew() {
        let merged = domain(NEW, OLD, "org.qemu.guest_agent.0").unwrap();
        let doc = roxmltree::Document::parse(&merged).expect("well formed");
        let root = doc.root_element();
        let devices = child(root, "devices").unwrap();
        let count = |tag: &str| elements(devices).filter(|d| d.has_tag_name(tag)).count();
        // Kept: the CD-ROM, the SPICE channel, the display and the video card, the
        // description, the reboot action, libosinfo's metadata.
        assert!(merged.contains("device='cdrom'"), "{merged}");
        assert!(merged.contains("com.redhat.spice.0"), "{merged}");
        assert!(
            merged.contains("<graphics type='spice'/>") && !merged.contains("vnc"),
            "{merged}"
        );
        assert!(merged.contains("<video>"), "{merged}");
        assert!(
            merged.contains("<description>by hand</description>"),
            "{merged}"
        );
        assert!(
            merged.contains("<on_reboot>destroy</on_reboot>"),
            "{merged}"
        );
        assert!(merged.contains("libosinfo:os"), "{merged}");
        // Written anew: the disks, NICs and guest agent channel of the spec, the memory; the
        // old disk, the old balloon size and the old mark are gone.
        assert_eq!(count("disk"), 2, "{merged}");
        assert_eq!(count("interface"), 1, "{merged}");
        assert_eq!(count("channel"), 2, "{merged}");
        assert!(
            !merged.contains("/x.qcow2") && !merged.contains("currentMemory"),
            "{merged}"
        );
        assert!(
            merged.contains("<memory unit='MiB'>512</memory>"),
            "{merged}"
        );
        // Where the old had no serial console, siteplan's is written.
        assert_eq!(count("serial"), 1, "{merged}");
        // The next update, from the same spec, keeps the same.
        assert_eq!(
            domain(NEW, &merged, "org.qemu.guest_agent.0").unwrap(),
            merged
        );
    }

    #[test]
    fn a_network_keeps_its_ipv6_range_and_port_groups() {
        let old = "<network><name>n</name><uuid>u</uuid><forward mode='nat'/><bridge name='n'/>\
            <mac address='52:54:00:01:02:03'/><portgroup name='pg'/>\
            <ip address='10.0.0.1' prefix='24'/><ip family='ipv6' address='fd00::1' prefix='64'/>\
            </network>";
        let new = "<network><name>n</name><metadata><siteplan:owner xmlns:siteplan='urn:siteplan:owner:1'/>\
            </metadata><forward mode='nat'/><bridge name='n'/><ip address='10.0.1.1' prefix='24'/></network>";
        let merged = network(new, old).unwrap();
        roxmltree::Document::parse(&merged).expect("well formed");
        assert!(
            merged.contains("fd00::1") && merged.contains("portgroup"),
            "{merged}"
        );
        assert!(merged.contains("<mac address"), "{merged}");
        assert!(
            !merged.contains("10.0.0.1") && !merged.contains("<uuid>"),
            "{merged}"
        );
    }
}
