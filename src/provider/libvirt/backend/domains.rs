//! Domains (VMs): defined, redefined and hot-plugged, powered, deleted with their snapshots,
//! their addresses and their serial console.

use super::*;
use async_trait::async_trait;

impl Inner {
    pub(super) fn create_vm(
        &self,
        vm: &VmSpec,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let io = |e: std::io::Error| ProviderError::backend(id, e);
        if self.domain(&vm.name).is_ok() {
            return Err(ProviderError::backend(id, "already exists"));
        }
        let xml = xml::domain_xml(vm, Some(mark), None, self.flavor(), &self.volume_facts(vm))
            .map_err(io)?;
        let d = self.conn.define_domain_xml(&xml).map_err(fail)?;
        crashpoint::point("vm defined");
        d.set_autostart(vm.autostart).map_err(fail)?;
        crashpoint::point("vm autostart set");
        if !vm.running {
            return Ok(format!("vm {} is defined", vm.name));
        }
        d.create().map_err(fail)?;
        Ok(format!("vm {} is defined and running", vm.name))
    }

    pub(super) fn update_vm(
        &self,
        want: &VmSpec,
        have: &VmSpec,
        live: &LiveResource,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<(String, bool, Option<String>), ProviderError> {
        // Also whether what changed waits for a restart, and the VM asked to shut down, if any.
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let io = |e: std::io::Error| ProviderError::backend(id, e);
        let mut needs_reboot = false;
        let mut stopping = None;
        let d = self.domain(&want.name)?;
        let uuid = d.uuid_string().map_err(fail)?;
        let xml = xml::domain_xml(
            want,
            Some(mark),
            Some(&uuid),
            self.flavor(),
            &self.volume_facts(want),
        )
        .map_err(io)?;
        // What the spec does not hold (a CD-ROM, a display, another tool's metadata) stays.
        let old = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(fail)?;
        let xml = xml::kept::domain(&xml, &old, xml::GUEST_AGENT_PORT)
            .map_err(|e| ProviderError::backend(id, e))?;
        self.conn.define_domain_xml(&xml).map_err(fail)?;
        crashpoint::point("vm redefined");
        if live.active && want.running {
            // The test driver cannot hot-plug; its saved definition is all there is.
            if !self.test_driver {
                self.hotplug(&d, &xml, have, want)?;
            }
            // What was not attached to the running domain waits for its restart.
            let hotplugged = !self.test_driver;
            let rest = |v: &VmSpec| VmSpec {
                disks: if hotplugged {
                    Vec::new()
                } else {
                    v.disks.clone()
                },
                nics: if hotplugged {
                    Vec::new()
                } else {
                    v.nics.clone()
                },
                running: false,
                autostart: false,
                ..v.clone()
            };
            needs_reboot = rest(want) != rest(have);
        }
        d.set_autostart(want.autostart).map_err(fail)?;
        match (live.active, want.running) {
            (false, true) => d.create().map_err(fail)?,
            // Asked to shut down; one that does not by the timeout is forced off.
            (true, false) => match d.shutdown() {
                Ok(()) => stopping = Some(want.name.clone()),
                Err(_) => self.force_off(&want.name)?,
            },
            _ => {}
        }
        let summary = if needs_reboot {
            format!(
                "vm {} updated; the change takes effect when it restarts",
                want.name
            )
        } else {
            format!("vm {} updated", want.name)
        };
        Ok((summary, needs_reboot, stopping))
    }

    pub(super) fn delete_vm(
        &self,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let d = self.domain(&id.name)?;
        let xml = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(fail)?;
        let info =
            xml::parse_domain(&xml, false, false).map_err(|e| ProviderError::backend(id, e))?;
        check_owner(id, info.mark.as_ref(), owner)?;
        if d.is_active().unwrap_or(false) {
            d.destroy().map_err(fail)?;
        }
        crashpoint::point("vm stopped for deletion");
        // Its snapshots go with it (libvirt refuses to undefine a domain that has any).
        snapshot::delete_all(&d);
        let both = sys::VIR_DOMAIN_UNDEFINE_NVRAM | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
        if d.undefine_flags(both).is_err()
            && d.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                .is_err()
        {
            d.undefine().map_err(fail)?;
        }
        Ok(format!("vm {} deleted", id.name))
    }

    /// Attaches and detaches disks and NICs of a running domain to match `want`, using the device
    /// elements of the domain XML just defined.
    pub(super) fn hotplug(
        &self,
        d: &Domain,
        defined_xml: &str,
        have: &VmSpec,
        want: &VmSpec,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::vm(&want.name);
        let live = sys::VIR_DOMAIN_AFFECT_LIVE;
        let doc =
            roxmltree::Document::parse(defined_xml).map_err(|e| ProviderError::backend(&id, e))?;
        let device = |tag: &str, matches: &dyn Fn(roxmltree::Node) -> bool| {
            doc.descendants()
                .find(|n| n.has_tag_name(tag) && matches(*n))
                .map(|n| defined_xml[n.range()].to_string())
        };
        for disk in want.disks.iter().filter(|d| !have.disks.contains(d)) {
            let found = device("disk", &|n| {
                n.children().any(|c| {
                    c.has_tag_name("source")
                        && c.attribute("pool") == Some(disk.pool.as_str())
                        && c.attribute("volume") == Some(disk.volume.as_str())
                })
            });
            if let Some(xml) = found {
                d.attach_device_flags(&xml, live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        for nic in want.nics.iter().filter(|n| {
            !have
                .nics
                .iter()
                .any(|h| h.mac == n.mac && h.network == n.network)
        }) {
            let found = device("interface", &|n| {
                n.children()
                    .any(|c| c.has_tag_name("mac") && c.attribute("address") == nic.mac.as_deref())
            });
            if let Some(xml) = found {
                d.attach_device_flags(&xml, live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        // Detaching needs the running domain's own device XML.
        let running_xml = d
            .xml_desc(0)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        let running =
            roxmltree::Document::parse(&running_xml).map_err(|e| ProviderError::backend(&id, e))?;
        for disk in have.disks.iter().filter(|d| !want.disks.contains(d)) {
            let found = running.descendants().find(|n| {
                n.has_tag_name("disk")
                    && n.children().any(|c| {
                        c.has_tag_name("source")
                            && c.attribute("pool") == Some(disk.pool.as_str())
                            && c.attribute("volume") == Some(disk.volume.as_str())
                    })
            });
            if let Some(n) = found {
                d.detach_device_flags(&running_xml[n.range()], live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        for nic in have.nics.iter().filter(|h| {
            !want
                .nics
                .iter()
                .any(|n| n.mac == h.mac && n.network == h.network)
        }) {
            let found = running.descendants().find(|n| {
                n.has_tag_name("interface")
                    && n.children().any(|c| {
                        c.has_tag_name("mac") && c.attribute("address") == nic.mac.as_deref()
                    })
            });
            if let Some(n) = found {
                d.detach_device_flags(&running_xml[n.range()], live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        Ok(())
    }

    /// A domain that `owner`'s plan created (its saved definition carries the plan's mark).
    /// Moves a running domain's NICs on `networks` onto those networks as they are now (made
    /// again since it started), live.
    pub(super) fn reattach(
        &self,
        vm: &str,
        networks: &[String],
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let id = ResourceId::vm(vm);
        let dom = self.owned_domain(vm, owner)?;
        let done = |summary: String| Done {
            id: id.clone(),
            summary,
            needs_reboot: false,
        };
        if self.test_driver {
            return Ok(done(format!(
                "vm {vm}: the sandbox has no bridges, so its NICs on {} need no moving",
                networks.join(", ")
            )));
        }
        if !dom.is_active().unwrap_or(false) {
            return Ok(done(format!(
                "vm {vm} is off: it joins {} when it starts",
                networks.join(", ")
            )));
        }
        let live = dom
            .xml_desc(0)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        let mut moved = Vec::new();
        for network in networks {
            let bridge = self
                .network(network)?
                .bridge_name()
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
            for (mac, steps) in xml::replug_updates(&live, network, &bridge) {
                for step in &steps {
                    dom.update_device_flags(step, sys::VIR_DOMAIN_AFFECT_LIVE)
                        .map_err(|e| {
                            ProviderError::backend(
                                &id,
                                format!("moving NIC {mac} onto network {network}: {}", err(e)),
                            )
                        })?;
                }
                moved.push(format!("{mac} onto {network}"));
            }
        }
        Ok(done(if moved.is_empty() {
            format!("vm {vm}: no NIC on {} to move", networks.join(", "))
        } else {
            format!("vm {vm}: NIC {} (made again), live", moved.join(", NIC "))
        }))
    }

    pub(super) fn owned_domain(&self, name: &str, owner: &Owner) -> Result<Domain, ProviderError> {
        let id = ResourceId::vm(name);
        let d = self.domain(name)?;
        let xml = d
            .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        let info = xml::parse_domain(&xml, false, false).map_err(ProviderError::Connection)?;
        check_owner(&id, info.mark.as_ref(), owner)?;
        Ok(d)
    }

    /// Forces a VM off, unless it is off already.
    pub(super) fn force_off(&self, name: &str) -> Result<(), ProviderError> {
        let d = self.domain(name)?;
        match d.destroy() {
            Ok(()) => Ok(()),
            Err(_) if !d.is_active().unwrap_or(true) => Ok(()),
            Err(e) => Err(ProviderError::backend(&ResourceId::vm(name), err(e))),
        }
    }

    /// A running VM's addresses: the leases its NICs hold on libvirt networks, and what its
    /// guest agent reports (asked only of VMs the plan gives one; a domain without the channel
    /// answers with an error, which means nothing known).
    pub(super) fn addresses(
        &self,
        vm: &str,
        has_agent: bool,
    ) -> Result<Vec<Address>, ProviderError> {
        let d = self.domain(vm)?;
        if !d.is_active().unwrap_or(false) {
            return Ok(Vec::new());
        }
        let mut sources = vec![(
            sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            AddressSource::Lease,
        )];
        if has_agent && !self.test_driver {
            sources.push((
                sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                AddressSource::Agent,
            ));
        }
        let mut found = Vec::new();
        for (flag, source) in sources {
            // An agent not started yet is an error here, and just means: nothing known yet.
            let Ok(ifaces) = d.interface_addresses(flag, 0) else {
                continue;
            };
            for iface in ifaces {
                let mac = iface
                    .hwaddr
                    .as_ref()
                    .filter(|m| !m.is_empty())
                    .map(|m| m.to_ascii_lowercase());
                found.extend(iface.addrs.iter().filter_map(|a| {
                    Some(Address {
                        ip: a.addr.parse::<IpAddr>().ok()?,
                        mac: mac.clone(),
                        source,
                    })
                }));
            }
        }
        found.retain(Address::reachable);
        Ok(found)
    }
}

impl LibvirtProvider {
    /// Waits for a VM asked to shut down to be off, polling with `tokio::time` (no blocking
    /// thread sleeps), and forces it off when the shutdown timeout has passed.
    pub(super) async fn finish_stopping(&self, vm: &str) -> Result<(), ProviderError> {
        self.finish_stopping_within(vm, self.inner.shutdown_timeout)
            .await
            .map(|_| ())
    }

    /// As `finish_stopping`, within `grace`; says whether the VM had to be forced off.
    pub(super) async fn finish_stopping_within(
        &self,
        vm: &str,
        grace: Duration,
    ) -> Result<bool, ProviderError> {
        let deadline = tokio::time::Instant::now() + grace;
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        while tokio::time::Instant::now() < deadline {
            ticks.tick().await;
            let name = vm.to_string();
            let active = self
                .blocking(move |inner| Ok(inner.domain(&name)?.is_active().unwrap_or(false)))
                .await?;
            if !active {
                return Ok(false);
            }
        }
        let name = vm.to_string();
        self.blocking(move |inner| inner.force_off(&name))
            .await
            .map(|()| true)
    }

    /// Asks a VM `owner` owns to shut down (or forces it off if it cannot be asked), and waits
    /// for it within `grace`. Says what happened.
    pub(super) async fn stop_owned(
        &self,
        vm: &str,
        grace: Duration,
        owner: &Owner,
    ) -> Result<&'static str, ProviderError> {
        let (name, owner) = (vm.to_string(), owner.clone());
        let asked = self
            .blocking(move |inner| {
                let d = inner.owned_domain(&name, &owner)?;
                if !d.is_active().unwrap_or(false) {
                    return Ok(None);
                }
                match d.shutdown() {
                    Ok(()) => Ok(Some(true)),
                    Err(_) => inner.force_off(&name).map(|()| Some(false)),
                }
            })
            .await?;
        match asked {
            None => Ok("was not running"),
            Some(false) => Ok("forced off"),
            Some(true) if self.finish_stopping_within(vm, grace).await? => {
                Ok("forced off after it did not shut down")
            }
            Some(true) => Ok("shut down"),
        }
    }

    pub(super) async fn start_owned(
        &self,
        vm: &str,
        owner: &Owner,
    ) -> Result<&'static str, ProviderError> {
        let (name, owner) = (vm.to_string(), owner.clone());
        self.blocking(move |inner| {
            let d = inner.owned_domain(&name, &owner)?;
            // A paused domain (a lab snapshot stopped half-way) is started by resuming it.
            let paused = d.state().is_ok_and(|(state, _)| {
                state == virt::domain::DomainStateEnum::Known(virt::domain::DomainState::Paused)
            });
            if paused {
                d.resume()
                    .map_err(|e| ProviderError::backend(&ResourceId::vm(&name), err(e)))?;
                return Ok("resumed (it was paused)");
            }
            if d.is_active().unwrap_or(false) {
                return Ok("was running");
            }
            d.create()
                .map_err(|e| ProviderError::backend(&ResourceId::vm(&name), err(e)))?;
            Ok("started")
        })
        .await
    }
}

/// A domain's console as a libvirt stream (blocking: `recv` waits for the guest).
pub(super) struct StreamConsole {
    pub(super) stream: virt::stream::Stream,
    /// The stream is the domain's: keep it while attached.
    pub(super) _domain: Domain,
}

impl Console for StreamConsole {
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream
            .recv(buf)
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| std::io::Error::other(err(e)))
    }

    fn send(&self, data: &[u8]) -> std::io::Result<()> {
        let mut sent = 0;
        while sent < data.len() {
            let n = self
                .stream
                .send(&data[sent..])
                .map_err(|e| std::io::Error::other(err(e)))?;
            sent += usize::try_from(n).unwrap_or(0).max(1);
        }
        Ok(())
    }
}

/// Puts `<uuid>` into a just-built definition, so redefining updates the existing object.
pub(super) fn with_uuid(xml: &str, root: &str, uuid: &str) -> std::io::Result<String> {
    use quick_xml::events::{BytesText, Event};
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut w = quick_xml::Writer::new(Vec::new());
    let mut depth = 0usize;
    loop {
        match reader.read_event().map_err(std::io::Error::other)? {
            Event::Start(s) => {
                depth += 1;
                let is_root = depth == 1 && s.name().as_ref() == root;
                w.write_event(Event::Start(s))?;
                if is_root {
                    w.create_element("uuid")
                        .write_text_content(BytesText::new(uuid))?;
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                w.write_event(Event::End(e))?;
            }
            Event::Eof => break,
            other => w.write_event(other)?,
        }
    }
    Ok(String::from_utf8(w.into_inner()).unwrap_or_default())
}

#[async_trait]
impl capability::PowerControl for LibvirtProvider {
    async fn power(&self, vm: &str, power: Power, owner: &Owner) -> Result<Done, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        self.change(touched, self.power_owned(vm, power, owner))
            .await
    }
}

#[async_trait]
impl capability::SerialConsole for LibvirtProvider {
    /// libvirt's console stream of the domain's first console (its serial port), as
    /// `virsh console` opens it.
    async fn console(&self, vm: &str, owner: &Owner) -> Result<Arc<dyn Console>, ProviderError> {
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.blocking(move |inner| {
            let id = ResourceId::vm(&vm);
            let d = inner.owned_domain(&vm, &owner)?;
            if !d.is_active().unwrap_or(false) {
                return Err(ProviderError::backend(
                    &id,
                    "is not running: start it first (`plan start`)",
                ));
            }
            let stream = virt::stream::Stream::new(&inner.conn, 0)
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
            d.open_console(None, &stream, 0).map_err(|e| {
                ProviderError::backend(&id, format!("cannot attach to its console: {}", err(e)))
            })?;
            Ok(Arc::new(StreamConsole { stream, _domain: d }) as Arc<dyn Console>)
        })
        .await
    }
}
