//! The plan lock on libvirt: an inactive network named after the plan, its holder in its
//! `<metadata>`. Defining it without a UUID is atomic: libvirt refuses a second definition of
//! a name that exists ("already exists with uuid"), so of two runs that try at once one gets it.
//! A network is the object that keeps metadata (pools and volumes keep none) and survives a
//! daemon restart; an inactive one has no bridge and no dnsmasq, and costs nothing.

use super::LibvirtProvider;
use super::Touched;
use crate::provider::ProviderError;
use async_trait::async_trait;
use virt::connect::Connect;

use crate::provider::capability;
use crate::provider::lock::{object_name, FoundLock, LockAttempt, LockHolder};

/// The namespace of the holder element in the lock network's `<metadata>`.
const LOCK_NS: &str = "urn:siteplan:lock:1";

fn message(e: virt::error::Error) -> String {
    e.message().to_string()
}

/// Makes the plan's lock network, or returns the one that exists.
pub fn create(conn: &Connect, holder: &LockHolder) -> Result<LockAttempt, String> {
    let name = object_name(&holder.plan);
    let xml = lock_xml(&name, holder, None)?;
    let mut last = String::new();
    // A lock released between a refused definition and reading it: try again.
    for _ in 0..3 {
        match conn.define_network_xml(&xml) {
            Ok(net) => return net.uuid_string().map(LockAttempt::Taken).map_err(message),
            Err(e) => last = message(e),
        }
        if let Some(found) = read(conn, &holder.plan)? {
            return Ok(LockAttempt::Held(found));
        }
    }
    Err(format!(
        "cannot make the plan's lock (network {name}): {last}"
    ))
}

/// The plan's lock network, if there is one.
pub fn read(conn: &Connect, plan: &str) -> Result<Option<FoundLock>, String> {
    let name = object_name(plan);
    let Ok(net) = conn.lookup_network_by_name(&name) else {
        return Ok(None);
    };
    let (Ok(xml), Ok(token)) = (net.xml_desc(0), net.uuid_string()) else {
        return Ok(None); // deleted meanwhile
    };
    let holder = holder_of(&xml).ok_or_else(|| {
        format!(
            "network {name} exists and is not a siteplan lock: siteplan keeps plan `{plan}`'s \
             lock under that name; rename or remove that network"
        )
    })?;
    Ok(Some(FoundLock { holder, token }))
}

/// Renews the lock network `token` names, if it is still there: its `renewed` time only, so
/// that what the run noted there stays.
pub fn renew(conn: &Connect, holder: &LockHolder, token: &str) -> Result<(), String> {
    edit(conn, &holder.plan, token, |recorded| {
        recorded.renewed = holder.renewed.clone();
    })
}

/// Notes in the plan's lock that `address` is about to be without a mark (a pool being made,
/// or being deleted after its ledger). Nothing when the plan holds no lock (the provider used
/// directly).
pub fn note_unmarked(conn: &Connect, plan: &str, address: &str) -> Result<(), String> {
    let Some(found) = read(conn, plan)? else {
        return Ok(());
    };
    edit(conn, plan, &found.token, |recorded| {
        if !recorded.unmarked.iter().any(|a| a == address) {
            recorded.unmarked.push(address.to_string());
        }
    })
}

/// Rewrites the holder recorded in the lock network `token` names.
fn edit(
    conn: &Connect,
    plan: &str,
    token: &str,
    change: impl FnOnce(&mut LockHolder),
) -> Result<(), String> {
    let name = object_name(plan);
    let gone = || format!("the lock of plan `{plan}` is gone");
    let net = conn
        .lookup_network_by_uuid_string(token)
        .map_err(|_| gone())?;
    if net.name().map_err(message)? != name {
        return Err(gone());
    }
    let mut recorded = net
        .xml_desc(0)
        .ok()
        .and_then(|xml| holder_of(&xml))
        .ok_or_else(gone)?;
    change(&mut recorded);
    // Defining the same name with the same UUID replaces the definition.
    conn.define_network_xml(&lock_xml(&name, &recorded, Some(token))?)
        .map(|_| ())
        .map_err(message)
}

/// Removes the lock network `token` names; `false` when it is not there any more.
pub fn delete(conn: &Connect, plan: &str, token: &str) -> Result<bool, String> {
    let net = match conn.lookup_network_by_uuid_string(token) {
        Ok(net) => net,
        Err(e) if e.code().is(virt::error::ErrorNumber::NoNetwork) => return Ok(false),
        Err(e) => return Err(message(e)),
    };
    if net.name().map_err(message)? != object_name(plan) {
        return Ok(false);
    }
    if net.is_active().unwrap_or(false) {
        let _ = net.destroy();
    }
    match net.undefine() {
        Ok(()) => Ok(true),
        // Removed by someone else meanwhile.
        Err(_) if conn.lookup_network_by_uuid_string(token).is_err() => Ok(false),
        Err(e) => Err(message(e)),
    }
}

fn lock_xml(name: &str, holder: &LockHolder, uuid: Option<&str>) -> Result<String, String> {
    use quick_xml::events::BytesText;
    let json = serde_json::to_string(holder).map_err(|e| e.to_string())?;
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    w.create_element("network")
        .write_inner_content(|w| {
            w.create_element("name")
                .write_text_content(BytesText::new(name))?;
            if let Some(uuid) = uuid {
                w.create_element("uuid")
                    .write_text_content(BytesText::new(uuid))?;
            }
            // A bridge name of its own, which is never made (the network is never started):
            // otherwise libvirt hands it the next free `virbrN`.
            w.create_element("bridge")
                .with_attribute(("name", bridge_name(&holder.plan).as_str()))
                .write_empty()?;
            w.create_element("metadata").write_inner_content(|w| {
                w.create_element("lock:holder")
                    .with_attribute(("xmlns:lock", LOCK_NS))
                    .write_text_content(BytesText::new(&json))?;
                Ok(())
            })?;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    String::from_utf8(w.into_inner()).map_err(|e| e.to_string())
}

/// `splk` and eight hex digits of a digest of the plan's name: 12 characters, within the
/// kernel's 15 for an interface name.
fn bridge_name(plan: &str) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(plan.as_bytes());
    format!("splk{}", hex::encode(&digest[..4]))
}

/// The holder recorded in a lock network's XML, if it is one.
pub fn holder_of(xml: &str) -> Option<LockHolder> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let element = doc
        .descendants()
        .find(|n| n.tag_name().namespace() == Some(LOCK_NS) && n.tag_name().name() == "holder")?;
    serde_json::from_str(element.text()?).ok()
}

#[async_trait]
impl capability::PlanLocks for LibvirtProvider {
    async fn create_lock(&self, holder: &LockHolder) -> Result<LockAttempt, ProviderError> {
        let touched = || Touched::network(&crate::provider::lock::object_name(&holder.plan));
        let holder = holder.clone();
        self.change(
            touched,
            self.blocking(move |inner| create(&inner.conn, &holder).map_err(|e| inner.lost(e))),
        )
        .await
    }

    async fn read_lock(&self, plan: &str) -> Result<Option<FoundLock>, ProviderError> {
        let plan = plan.to_string();
        self.blocking(move |inner| read(&inner.conn, &plan).map_err(|e| inner.lost(e)))
            .await
    }

    async fn renew_lock(&self, holder: &LockHolder, token: &str) -> Result<(), ProviderError> {
        let touched = || Touched::network(&crate::provider::lock::object_name(&holder.plan));
        let (holder, token) = (holder.clone(), token.to_string());
        self.change(
            touched,
            self.blocking(move |inner| {
                renew(&inner.conn, &holder, &token).map_err(|e| inner.lost(e))
            }),
        )
        .await
    }

    async fn delete_lock(&self, plan: &str, token: &str) -> Result<bool, ProviderError> {
        let touched = || Touched::network(&crate::provider::lock::object_name(plan));
        let (plan, token) = (plan.to_string(), token.to_string());
        self.change(
            touched,
            self.blocking(move |inner| {
                delete(&inner.conn, &plan, &token).map_err(|e| inner.lost(e))
            }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_reads_back_from_the_xml_written() {
        let holder = LockHolder::this_process("lab", "plan apply lab.yml");
        let xml = lock_xml("siteplan-lock-lab", &holder, Some("x")).unwrap();
        assert_eq!(holder_of(&xml), Some(holder));
        assert_eq!(holder_of("<network><name>n</name></network>"), None);
    }

    #[test]
    fn of_two_definitions_of_a_lock_only_the_first_is_taken() {
        super::super::quiet_libvirt();
        let conn = Connect::open(Some("test:///default")).unwrap();
        let first = LockHolder::this_process("race", "plan apply race.yml");
        let second = LockHolder::this_process("race", "plan destroy race.yml");
        let LockAttempt::Taken(token) = create(&conn, &first).unwrap() else {
            panic!("the first run takes the lock");
        };
        match create(&conn, &second).unwrap() {
            LockAttempt::Held(found) => {
                assert_eq!(found.holder, first);
                assert_eq!(found.token, token);
            }
            LockAttempt::Taken(_) => panic!("a second lock was made"),
        }
        let renewed = first.renewed_now();
        renew(&conn, &renewed, &token).unwrap();
        assert_eq!(read(&conn, "race").unwrap().unwrap().holder, renewed);
        assert!(!delete(&conn, "race", "00000000-0000-0000-0000-000000000000").unwrap());
        assert!(delete(&conn, "race", &token).unwrap());
        assert_eq!(read(&conn, "race").unwrap(), None);
        assert!(renew(&conn, &renewed, &token).is_err());
    }
}
