//! Observing: every network, pool, volume, DNS record and domain in scope, as specs with their
//! marks, and what a running VM waits for a restart to run.

use super::*;

/// Whether observing `scope` includes a resource: the plan's, or one it names.
pub(super) fn wanted(scope: &Scope, id: &ResourceId, owner: Option<&OwnerMark>) -> bool {
    owner.is_some_and(|o| o.plan == scope.plan) || scope.ids.contains(id)
}

impl Inner {
    pub(super) fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let mut observed = self.observe_objects(scope)?;
        self.observe_tunnels(scope, &mut observed, None)?;
        Ok(observed)
    }

    /// What libvirt holds in scope: everything but the tunnels, which are the host's.
    pub(super) fn observe_objects(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let wanted = |id: &ResourceId, owner: Option<&OwnerMark>| wanted(scope, id, owner);
        let conn_err =
            |e: virt::error::Error| ProviderError::Connection(format!("{}: {}", self.uri, err(e)));
        let mut observed = Observed::default();

        let named_networks = |flags| -> Result<HashSet<String>, ProviderError> {
            Ok(self
                .conn
                .list_all_networks(flags)
                .map_err(conn_err)?
                .iter()
                .filter_map(|n| n.name().ok())
                .collect())
        };
        let active_networks = named_networks(sys::VIR_CONNECT_LIST_NETWORKS_ACTIVE)?;
        let autostarting_networks = named_networks(sys::VIR_CONNECT_LIST_NETWORKS_AUTOSTART)?;
        for net in self.conn.list_all_networks(0).map_err(conn_err)? {
            let name = net.name().unwrap_or_default();
            let (Ok(xml), autostart, active) = (
                network_definition(&net),
                autostarting_networks.contains(&name),
                active_networks.contains(&name),
            ) else {
                continue; // deleted while listing
            };
            let (spec, owner) =
                xml::parse_network(&xml, autostart).map_err(ProviderError::Connection)?;
            for (id, live) in records::observe(&spec.name, &xml, &spec.dns_hosts, wanted) {
                observed.resources.insert(id, live);
            }
            let id = ResourceId::network(&spec.name);
            if wanted(&id, owner.as_ref()) {
                observed.resources.insert(
                    id,
                    LiveResource {
                        spec: Spec::Network(spec),
                        owner,
                        active,
                        empty: None,
                        pending_restart: Vec::new(),
                        paused: false,
                    },
                );
            }
        }

        // Volume paths, to resolve backing files and disks given by path.
        let mut by_path: HashMap<String, (String, String)> = HashMap::new();
        let mut volumes: Vec<(String, xml::VolumeInfo, Option<OwnerMark>)> = Vec::new();
        for pool in self.conn.list_all_storage_pools(0).map_err(conn_err)? {
            let Ok(xml) = pool.xml_desc(0) else { continue };
            let spec = xml::parse_pool(&xml, pool.autostart().unwrap_or(false))
                .map_err(ProviderError::Connection)?;
            let active = pool.is_active().unwrap_or(false);
            let ledger = if active {
                self.read_ledger(&pool, &spec.name)?
            } else {
                Ledger::default()
            };
            let id = ResourceId::pool(&spec.name);
            let mut holds = 0;
            if active {
                for vol in pool.list_all_volumes(0).unwrap_or_default() {
                    let Ok(vxml) = vol.xml_desc(0) else { continue };
                    let info = xml::parse_volume(&vxml).map_err(ProviderError::Connection)?;
                    if info.name == LEDGER_VOLUME {
                        continue;
                    }
                    holds += 1;
                    by_path.insert(info.path.clone(), (spec.name.clone(), info.name.clone()));
                    let vmark = ledger.volumes.get(&info.name).cloned();
                    volumes.push((spec.name.clone(), info, vmark));
                }
            }
            if wanted(&id, ledger.pool.as_ref()) {
                observed.resources.insert(
                    id,
                    LiveResource {
                        spec: Spec::Pool(spec),
                        owner: ledger.pool,
                        active,
                        empty: active.then_some(holds == 0),
                        pending_restart: Vec::new(),
                        paused: false,
                    },
                );
            }
        }
        for (pool, info, owner) in volumes {
            let id = ResourceId::volume(&pool, &info.name);
            if !wanted(&id, owner.as_ref()) {
                continue;
            }
            let created_from = owner.as_ref().and_then(|m| match &m.spec {
                Spec::Volume(v) => Some(v),
                _ => None,
            });
            let spec = VolumeSpec {
                name: info.name.clone(),
                pool: pool.clone(),
                // An image keeps its own size unless the plan set one.
                capacity_bytes: match created_from {
                    Some(v) if v.capacity_bytes.is_none() => None,
                    _ => Some(info.capacity),
                },
                // A fetched image's format is its bytes' (a kernel is raw whatever the plan
                // guessed): libvirt's reading of it is no change of the plan's.
                format: match created_from {
                    Some(v) if matches!(v.source, VolumeSource::Fetch { .. }) => v.format,
                    _ => info.format,
                },
                // Written content fills a volume, thin or not: only a blank one shows it.
                // The test driver's volumes are all thin (see `create_volume`).
                thin: match created_from {
                    Some(v) if v.source != VolumeSource::Blank || self.test_driver => v.thin,
                    _ => info.thin,
                },
                backing: info.backing_path.as_ref().map(|p| {
                    by_path
                        .get(p)
                        .cloned()
                        .unwrap_or_else(|| (String::new(), p.clone()))
                }),
                source: created_from.map_or(VolumeSource::Blank, |v| v.source.clone()),
            };
            observed.resources.insert(
                id,
                LiveResource {
                    spec: Spec::Volume(spec),
                    owner,
                    active: true,
                    empty: None,
                    pending_restart: Vec::new(),
                    paused: false,
                },
            );
        }

        // Which domains run and which start with the host: two calls for all of them, rather
        // than two per domain (each call is a round trip, which over ssh is what costs).
        let named = |flags| -> Result<HashSet<String>, ProviderError> {
            Ok(self
                .conn
                .list_all_domains(flags)
                .map_err(conn_err)?
                .iter()
                .filter_map(|d| d.name().ok())
                .collect())
        };
        let running_domains = named(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)?;
        let autostarting_domains = named(sys::VIR_CONNECT_LIST_DOMAINS_AUTOSTART)?;
        let paused_domains = named(sys::VIR_CONNECT_LIST_DOMAINS_PAUSED)?;
        for dom in self.conn.list_all_domains(0).map_err(conn_err)? {
            let Ok(xml) = dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE) else {
                continue;
            };
            let name = dom.name().unwrap_or_default();
            let running = running_domains.contains(&name);
            let autostart = autostarting_domains.contains(&name);
            let mut info =
                xml::parse_domain(&xml, running, autostart).map_err(ProviderError::Connection)?;
            info.resolve_paths(&by_path);
            let id = ResourceId::vm(&info.spec.name);
            if wanted(&id, info.mark.as_ref()) {
                if let (None, Some(plan)) = (&info.mark, &info.kcli_plan) {
                    observed.kcli_plans.insert(id.clone(), plan.clone());
                }
                let pending_restart = if running {
                    self.pending_restart(&dom, &info, &by_path)
                } else {
                    Vec::new()
                };
                observed.resources.insert(
                    id,
                    LiveResource {
                        spec: Spec::Vm(info.spec),
                        owner: info.mark,
                        active: running,
                        empty: None,
                        pending_restart,
                        paused: paused_domains.contains(&name),
                    },
                );
            }
        }
        Ok(observed)
    }

    /// What a running domain's saved definition changed that the running domain does not
    /// have yet: its live definition read as a spec, against the saved one. The live CPU is
    /// the host model expanded, so the model it started with comes from the live definition's
    /// mark (the spec it was started from) when it has one.
    pub(super) fn pending_restart(
        &self,
        dom: &Domain,
        defined: &xml::DomainInfo,
        by_path: &HashMap<String, (String, String)>,
    ) -> Vec<Pending> {
        let Ok(live_xml) = dom.xml_desc(0) else {
            return Vec::new();
        };
        let Ok(mut booted) = xml::parse_domain(&live_xml, true, defined.spec.autostart) else {
            return Vec::new();
        };
        booted.resolve_paths(by_path);
        booted.spec.cpu_model = match &booted.mark {
            Some(OwnerMark {
                spec: Spec::Vm(started),
                ..
            }) => started.cpu_model.clone(),
            _ => defined.spec.cpu_model.clone(),
        };
        // Started before siteplan recorded its seed: nothing says the seed changed since.
        if booted.spec.seed_sha256.is_none() {
            booted.spec.seed_sha256 = defined.spec.seed_sha256.clone();
        }
        Pending::between(&Spec::Vm(booted.spec), &Spec::Vm(defined.spec.clone()))
    }
}
