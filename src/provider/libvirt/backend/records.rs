//! DNS records a plan keeps in a network it does not make (kcli's `dns` entries in the host's
//! `default` network).
//!
//! The network is not the plan's, so nothing of it is changed but the records the plan adds:
//! each is a `<dns><host>` libvirt adds and removes (live and in the definition), and which
//! records are whose is kept where libvirt keeps a network's own marks, in its `<metadata>`: one
//! `<siteplan:records>` element holding every plan's records by name, each with the plan and
//! spec it was made from. A record another plan (or nobody) made is never changed.

use std::collections::BTreeMap;

use virt::sys;

use super::xml::{self, OWNER_NS};
use crate::plan::model::spec::{DnsHost, DnsRecordSpec, ResourceId, Spec};
use crate::provider::{LiveResource, OwnerMark, ProviderError};

/// The records ledger of a network's definition: record name → its mark.
pub type Records = BTreeMap<String, OwnerMark>;

const START: &str = "<siteplan:records";
const END: &str = "</siteplan:records>";

/// The ledger in a network's XML (empty when there is none, or it cannot be read).
pub fn ledger(network_xml: &str) -> Records {
    let Ok(doc) = roxmltree::Document::parse(network_xml) else {
        return Records::new();
    };
    doc.root_element()
        .children()
        .find(|c| c.has_tag_name("metadata"))
        .and_then(|m| {
            m.children().find(|c| {
                c.tag_name().namespace() == Some(OWNER_NS) && c.tag_name().name() == "records"
            })
        })
        .and_then(|r| r.text())
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The network's XML with `records` as its ledger (none, when empty). Only the ledger element
/// changes: the rest of the definition is the network owner's.
pub fn with_ledger(network_xml: &str, records: &Records) -> Result<String, String> {
    let mut xml = network_xml.to_string();
    if let (Some(start), Some(end)) = (xml.find(START), xml.find(END)) {
        xml.replace_range(start..end + END.len(), "");
    }
    if records.is_empty() {
        return Ok(without_empty_metadata(xml));
    }
    let json = serde_json::to_string(records).map_err(|e| e.to_string())?;
    let element = format!(
        "<siteplan:records xmlns:siteplan=\"{OWNER_NS}\">{}</siteplan:records>",
        quick_xml::escape::escape(json.as_str())
    );
    if let Some(at) = xml.find("</metadata>") {
        xml.insert_str(at, &element);
    } else if let Some(at) = xml.find("<metadata/>") {
        xml.replace_range(
            at..at + "<metadata/>".len(),
            &format!("<metadata>{element}</metadata>"),
        );
    } else {
        let after = ["</uuid>", "</name>"]
            .iter()
            .find_map(|tag| xml.find(tag).map(|at| at + tag.len()))
            .ok_or("the network's definition has no name")?;
        xml.insert_str(after, &format!("<metadata>{element}</metadata>"));
    }
    Ok(xml)
}

/// The XML without a `<metadata>` left holding nothing but whitespace (its line too), as it
/// was before the plan's first record: libvirt keeps the whitespace otherwise.
fn without_empty_metadata(mut xml: String) -> String {
    let (Some(start), Some(end)) = (xml.find("<metadata>"), xml.find("</metadata>")) else {
        return xml;
    };
    if start > end || !xml[start + "<metadata>".len()..end].trim().is_empty() {
        return xml;
    }
    let line_start = xml[..start].rfind('\n').map_or(start, |i| {
        if xml[i + 1..start].trim().is_empty() {
            i + 1
        } else {
            start
        }
    });
    let mut stop = end + "</metadata>".len();
    if xml[stop..].starts_with('\n') && line_start < start {
        stop += 1;
    }
    xml.replace_range(line_start..stop, "");
    xml
}

/// The host entry of a record: its address and names.
pub fn host(spec: &DnsRecordSpec) -> DnsHost {
    DnsHost {
        ip: spec.ip,
        names: spec.names.clone(),
    }
}

/// The records of `network_xml` that `wanted` asks for, as found: a record whose host is gone
/// (removed by hand) is not found, and will be made again.
pub fn observe(
    network: &str,
    network_xml: &str,
    hosts: &[DnsHost],
    wanted: impl Fn(&ResourceId, Option<&OwnerMark>) -> bool,
) -> Vec<(ResourceId, LiveResource)> {
    let mut found = Vec::new();
    for (name, mark) in ledger(network_xml) {
        let id = ResourceId::dns_record(network, &name);
        if !wanted(&id, Some(&mark)) {
            continue;
        }
        let Some(host) = hosts.iter().find(|h| h.names.first() == Some(&name)) else {
            continue;
        };
        let spec = Spec::Dns(DnsRecordSpec {
            network: network.to_string(),
            name,
            ip: host.ip,
            names: host.names.clone(),
        });
        found.push((
            id,
            LiveResource {
                spec,
                owner: Some(mark),
                active: true,
                empty: None,
                pending_restart: Vec::new(),
                paused: false,
            },
        ));
    }
    found
}

/// Adds or removes one host in a network, in its definition and, when it runs, live.
pub fn change_host(
    net: &virt::network::Network,
    host: &DnsHost,
    add: bool,
) -> Result<(), virt::error::Error> {
    let mut flags = sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG;
    if net.is_active().unwrap_or(false) {
        flags |= sys::VIR_NETWORK_UPDATE_AFFECT_LIVE;
    }
    let command = if add {
        sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST
    } else {
        sys::VIR_NETWORK_UPDATE_COMMAND_DELETE
    };
    let xml = xml::dns_host_xml(host).unwrap_or_default();
    net.update(command, sys::VIR_NETWORK_SECTION_DNS_HOST, -1, &xml, flags)
        .map(|_| ())
}

/// Whether a name is answered already by a host of the network.
pub fn taken<'a>(hosts: &'a [DnsHost], name: &str) -> Option<&'a DnsHost> {
    hosts.iter().find(|h| h.names.iter().any(|n| n == name))
}

/// Why a record cannot be made: its name is answered by a host the plan did not add.
pub fn conflict(id: &ResourceId, host: &DnsHost) -> ProviderError {
    ProviderError::backend(
        id,
        format!(
            "the network already answers this name (for {}), and not for this plan: siteplan \
             changes no record it did not make",
            host.ip
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(plan: &str) -> OwnerMark {
        OwnerMark {
            plan: plan.into(),
            spec: Spec::Dns(DnsRecordSpec {
                network: "default".into(),
                name: "api".into(),
                ip: "192.168.122.5".parse().unwrap(),
                names: vec!["api".into()],
            }),
            prevent_destroy: false,
            created: None,
            applied_from: None,
            group: None,
        }
    }

    #[test]
    fn the_ledger_goes_into_the_metadata_and_back_leaving_the_rest() {
        let plain = "<network><name>default</name><uuid>u</uuid><bridge name='virbr0'/></network>";
        let mut records = Records::new();
        records.insert("api".into(), mark("lab"));
        let with = with_ledger(plain, &records).unwrap();
        assert!(
            with.contains("<uuid>u</uuid><metadata><siteplan:records"),
            "{with}"
        );
        assert_eq!(ledger(&with), records);
        // Replaced, not added twice; and gone when empty, leaving what was there.
        let again = with_ledger(&with, &records).unwrap();
        assert_eq!(again.matches(START).count(), 1);
        assert_eq!(
            ledger(&with_ledger(&with, &Records::new()).unwrap()),
            Records::new()
        );
        let formatted = "<network>\n  <name>n</name>\n  <metadata>\n    <siteplan:records xmlns:siteplan='u'>{}</siteplan:records>\n  </metadata>\n  <bridge/>\n</network>\n";
        assert_eq!(
            with_ledger(formatted, &Records::new()).unwrap(),
            "<network>\n  <name>n</name>\n  <bridge/>\n</network>\n",
            "no empty metadata left behind"
        );
        let theirs = "<network><name>n</name><metadata><x:y xmlns:x='urn:x'/></metadata></network>";
        let with = with_ledger(theirs, &records).unwrap();
        assert!(
            with.contains("<x:y xmlns:x='urn:x'/><siteplan:records"),
            "{with}"
        );
    }
}
