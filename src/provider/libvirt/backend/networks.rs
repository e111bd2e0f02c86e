//! Networks, and DNS records in networks the plan does not make: made, changed live where
//! dnsmasq allows it, and deleted, each only when its mark says it is the plan's.

use super::*;

impl Inner {
    pub(super) fn create_dns(
        &self,
        record: &DnsRecordSpec,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let net = self.network(&record.network)?;
        let xml = network_definition(&net).map_err(fail)?;
        let (live, _) = xml::parse_network(&xml, false).map_err(ProviderError::Connection)?;
        if let Some(host) = records::taken(&live.dns_hosts, &record.name) {
            return Err(records::conflict(id, host));
        }
        records::change_host(&net, &records::host(record), true).map_err(fail)?;
        crashpoint::point("dns record added");
        self.edit_records(&record.network, |r| {
            r.insert(record.name.clone(), mark.clone());
        })?;
        Ok(format!(
            "{} answers for {}",
            record.network,
            record.names.join(", ")
        ))
    }

    pub(super) fn create_network(
        &self,
        net: &NetworkSpec,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let io = |e: std::io::Error| ProviderError::backend(id, e);
        if self.network(&net.name).is_ok() {
            return Err(ProviderError::backend(id, "already exists"));
        }
        let n = self
            .conn
            .define_network_xml(&xml::network_xml(net, Some(mark)).map_err(io)?)
            .map_err(fail)?;
        crashpoint::point("network defined");
        if let Err(e) = n.create() {
            let _ = n.undefine();
            return Err(fail(e));
        }
        crashpoint::point("network started");
        n.set_autostart(net.autostart).map_err(fail)?;
        Ok(format!(
            "network {} is active on bridge {}",
            net.name, net.bridge
        ))
    }

    pub(super) fn update_network(
        &self,
        want: &NetworkSpec,
        have: &NetworkSpec,
        live: &LiveResource,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let io = |e: std::io::Error| ProviderError::backend(id, e);
        let replace_needed = |what: &str| {
            ProviderError::Unsupported(format!(
                "{id}: changing {what} needs the resource to be replaced"
            ))
        };
        let comparable = |n: &NetworkSpec| NetworkSpec {
            hosts: Vec::new(),
            dns_hosts: Vec::new(),
            autostart: false,
            ..n.clone()
        };
        if comparable(want) != comparable(have) {
            return Err(replace_needed("a network's addressing or forwarding"));
        }
        let net = self.network(&want.name)?;
        if !live.active {
            net.create().map_err(fail)?;
        }
        if live.active {
            // Reservations and DNS records change on the running network: dnsmasq
            // answers for them at once.
            let ip_hosts = sys::VIR_NETWORK_SECTION_IP_DHCP_HOST;
            update_live(&net, ip_hosts, &have.hosts, &want.hosts, xml::dhcp_host_xml)
                .map_err(|e| ProviderError::backend(id, e))?;
            let dns_hosts = sys::VIR_NETWORK_SECTION_DNS_HOST;
            update_live(
                &net,
                dns_hosts,
                &have.dns_hosts,
                &want.dns_hosts,
                xml::dns_host_xml,
            )
            .map_err(|e| ProviderError::backend(id, e))?;
        }
        // Redefining saves the new reservations and the new mark.
        let uuid = net.uuid_string().map_err(fail)?;
        let defined = xml::network_xml(want, Some(mark)).map_err(io)?;
        // What the spec does not hold (an IPv6 range, port groups) stays.
        let old = network_definition(&net).map_err(fail)?;
        let defined =
            xml::kept::network(&defined, &old).map_err(|e| ProviderError::backend(id, e))?;
        let defined = with_uuid(&defined, "network", &uuid).map_err(io)?;
        // The test driver ignores a definition given to a running network, even once it
        // restarts: it takes one only while stopped. Stopping costs nothing there (no
        // bridge, no guest traffic), and a run killed meanwhile leaves a stopped network,
        // which the next run starts.
        let restart = self.test_driver && live.active;
        if restart {
            net.destroy().map_err(fail)?;
        }
        self.conn.define_network_xml(&defined).map_err(fail)?;
        crashpoint::point("network redefined");
        if restart {
            net.create().map_err(fail)?;
        }
        net.set_autostart(want.autostart).map_err(fail)?;
        Ok(format!("network {} updated", want.name))
    }

    pub(super) fn update_dns(
        &self,
        want: &DnsRecordSpec,
        have: &DnsRecordSpec,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let net = self.network(&want.network)?;
        records::change_host(&net, &records::host(have), false).map_err(fail)?;
        records::change_host(&net, &records::host(want), true).map_err(fail)?;
        self.edit_records(&want.network, |r| {
            r.insert(want.name.clone(), mark.clone());
        })?;
        Ok(format!(
            "{} answers for {}",
            want.network,
            want.names.join(", ")
        ))
    }

    pub(super) fn delete_dns(
        &self,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let network = id.pool.clone().unwrap_or_default();
        let net = self.network(&network)?;
        let xml = network_definition(&net).map_err(fail)?;
        let ours = records::ledger(&xml).remove(&id.name);
        check_owner(id, ours.as_ref(), owner)?;
        let (live, _) = xml::parse_network(&xml, false).map_err(ProviderError::Connection)?;
        if let Some(host) = live
            .dns_hosts
            .iter()
            .find(|h| h.names.first() == Some(&id.name))
        {
            records::change_host(&net, host, false).map_err(fail)?;
        }
        crashpoint::point("dns record removed");
        self.edit_records(&network, |r| {
            r.remove(&id.name);
        })?;
        Ok(format!("{network} no longer answers for {}", id.name))
    }

    pub(super) fn delete_network(
        &self,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let n = self.network(&id.name)?;
        let (_, mark) = xml::parse_network(&network_definition(&n).map_err(fail)?, false)
            .map_err(|e| ProviderError::backend(id, e))?;
        check_owner(id, mark.as_ref(), owner)?;
        if n.is_active().unwrap_or(false) {
            n.destroy().map_err(fail)?;
        }
        crashpoint::point("network stopped for deletion");
        n.undefine().map_err(fail)?;
        Ok(format!("network {} deleted", id.name))
    }

    /// Rewrites the records ledger of a network the plan does not make (see `records`).
    pub(super) fn edit_records(
        &self,
        network: &str,
        edit: impl FnOnce(&mut records::Records),
    ) -> Result<(), ProviderError> {
        let id = ResourceId::network(network);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let net = self.network(network)?;
        let xml = network_definition(&net).map_err(fail)?;
        let mut ledger = records::ledger(&xml);
        edit(&mut ledger);
        let defined =
            records::with_ledger(&xml, &ledger).map_err(|e| ProviderError::backend(&id, e))?;
        // As for the plan's own networks: the test driver takes a definition only while the
        // network is stopped, which costs nothing there.
        let restart = self.test_driver && net.is_active().unwrap_or(false);
        if restart {
            net.destroy().map_err(fail)?;
        }
        self.conn.define_network_xml(&defined).map_err(fail)?;
        if restart {
            net.create().map_err(fail)?;
        }
        Ok(())
    }
}

/// A network's persistent definition, which holds its mark as last written (a running network
/// keeps the metadata it was started with). The test driver has only the one definition.
/// Deletes from a running network's `section` the entries of `have` that `want` lacks, then
/// adds those of `want` that `have` lacks.
pub(super) fn update_live<T: PartialEq>(
    net: &virt::network::Network,
    section: sys::virNetworkUpdateSection,
    have: &[T],
    want: &[T],
    xml: impl Fn(&T) -> std::io::Result<String>,
) -> Result<(), String> {
    let gone = have.iter().filter(|h| !want.contains(h));
    let new = want.iter().filter(|h| !have.contains(h));
    let changes = gone
        .map(|h| (sys::VIR_NETWORK_UPDATE_COMMAND_DELETE, h))
        .chain(new.map(|h| (sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, h)));
    for (command, entry) in changes {
        let text = xml(entry).map_err(|e| e.to_string())?;
        net.update(
            command,
            section,
            -1,
            &text,
            sys::VIR_NETWORK_UPDATE_AFFECT_LIVE,
        )
        .map_err(err)?;
    }
    Ok(())
}

pub(super) fn network_definition(
    net: &virt::network::Network,
) -> Result<String, virt::error::Error> {
    net.xml_desc(sys::VIR_NETWORK_XML_INACTIVE)
        .or_else(|_| net.xml_desc(0))
}
