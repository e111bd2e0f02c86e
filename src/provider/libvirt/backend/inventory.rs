//! What else the connection holds, whoever made it: plans' VMs, a network's users, a VM's disks
//! and snapshots.

use async_trait::async_trait;
use virt::sys;

use super::{err, snapshot, xml, LibvirtProvider};
use crate::provider::capability;
use crate::provider::{
    Address, AddressSource, MadeBy, NetworkUser, PlanMember, ProviderError, ResourceId, VmDetails,
};

#[async_trait]
impl capability::Inventory for LibvirtProvider {
    async fn network_users(&self, networks: &[String]) -> Result<Vec<NetworkUser>, ProviderError> {
        let networks = networks.to_vec();
        self.blocking(move |inner| {
            let domains = inner
                .conn
                .list_all_domains(0)
                .map_err(|e| ProviderError::Connection(err(e)))?;
            let mut users = Vec::new();
            for dom in domains {
                // The saved definition, and what a running domain runs with (a NIC hot-plugged
                // or moved lives there only).
                let running = dom.is_active().unwrap_or(false);
                let mut seen = std::collections::BTreeSet::new();
                let mut plan = None;
                let mut name = String::new();
                for flags in [sys::VIR_DOMAIN_XML_INACTIVE, 0] {
                    let Ok(xml) = dom.xml_desc(flags) else {
                        continue;
                    };
                    let Ok(info) = xml::parse_domain(&xml, running, false) else {
                        continue;
                    };
                    plan = plan.or(info.mark.map(|m| m.plan)).or(info.kcli_plan);
                    name = info.spec.name.clone();
                    for nic in info.spec.nics {
                        if networks.contains(&nic.network) {
                            seen.insert(nic.network);
                        }
                    }
                }
                users.extend(seen.into_iter().map(|network| NetworkUser {
                    network,
                    vm: name.clone(),
                    plan: plan.clone(),
                    running,
                }));
            }
            Ok(users)
        })
        .await
    }

    async fn plans(&self) -> Result<Vec<PlanMember>, ProviderError> {
        self.blocking(|inner| {
            let domains = inner
                .conn
                .list_all_domains(0)
                .map_err(|e| ProviderError::Connection(err(e)))?;
            let mut found = Vec::new();
            for dom in domains {
                let Ok(xml) = dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE) else {
                    continue;
                };
                let Ok(info) = xml::parse_domain(&xml, false, false) else {
                    continue;
                };
                let (plan, made_by) = match (info.mark, info.kcli_plan) {
                    (Some(mark), _) => (mark.plan, MadeBy::Siteplan),
                    (None, Some(plan)) => (plan, MadeBy::Kcli),
                    (None, None) => continue,
                };
                found.push(PlanMember {
                    plan,
                    made_by,
                    vm: info.spec.name,
                    running: dom.is_active().unwrap_or(false),
                });
            }
            Ok(found)
        })
        .await
    }

    async fn details(&self, vm: &str) -> Result<VmDetails, ProviderError> {
        let vm = vm.to_string();
        self.blocking(move |inner| {
            let id = ResourceId::vm(&vm);
            let d = inner.domain(&vm)?;
            let xml = d
                .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
            let info = xml::parse_domain(&xml, false, false).map_err(ProviderError::Connection)?;
            let mut details = VmDetails::default();
            for disk in &info.spec.disks {
                if let Ok(path) = inner
                    .volume(&disk.pool, &disk.volume)
                    .and_then(|v| v.path().map_err(|e| ProviderError::backend(&id, err(e))))
                {
                    details
                        .disk_paths
                        .insert(format!("{}/{}", disk.pool, disk.volume), path);
                }
            }
            for s in d.list_all_snapshots(0).unwrap_or_default() {
                let Ok(name) = s.name() else { continue };
                if s.xml_desc(0)
                    .is_ok_and(|text| snapshot::is_lab_snapshot(&text))
                {
                    details.lab_snapshots.push(name.clone());
                }
                details.snapshots.push(name);
            }
            details.snapshots.sort();
            details.lab_snapshots.sort();
            Ok(details)
        })
        .await
    }
}

#[async_trait]
impl capability::Placement for LibvirtProvider {
    /// The host's CPUs and memory, as libvirt reports them (one call).
    async fn capacity(&self) -> Result<Option<capability::Capacity>, ProviderError> {
        self.blocking(|inner| {
            let node = inner
                .conn
                .node_info()
                .map_err(|e| ProviderError::Connection(err(e)))?;
            Ok(Some(capability::Capacity {
                cpus: node.cpus.into(),
                // libvirt says KiB.
                memory_bytes: node.memory.saturating_mul(1024),
            }))
        })
        .await
    }

    /// Every domain's vCPUs and memory (running or not: a stopped VM comes back), and each
    /// active pool's free space.
    fn migrates(&self) -> Result<(), String> {
        match self.inner.test_driver {
            true => Err("libvirt's test driver (the sandbox) moves no VM between hosts".into()),
            false => Ok(()),
        }
    }

    async fn migrate(&self, vm: &str, to: &str) -> Result<capability::Migrated, ProviderError> {
        let (vm, to) = (vm.to_string(), to.to_string());
        self.blocking(move |inner| inner.migrate(&vm, &to)).await
    }

    async fn leases(&self, network: &str) -> Result<Vec<Address>, ProviderError> {
        let network = network.to_string();
        self.blocking(move |inner| {
            // The test driver keeps no leases.
            if inner.test_driver {
                return Ok(Vec::new());
            }
            let net = inner.network(&network)?;
            let leases = super::leases::of(&net).map_err(ProviderError::Connection)?;
            Ok(leases
                .into_iter()
                .map(|(mac, ip)| Address {
                    ip,
                    mac: Some(mac),
                    source: AddressSource::Lease,
                })
                .collect())
        })
        .await
    }

    async fn allocation(&self) -> Result<Option<capability::Allocation>, ProviderError> {
        self.blocking(|inner| {
            let fail = |e| ProviderError::Connection(err(e));
            let mut allocation = capability::Allocation::default();
            for domain in inner.conn.list_all_domains(0).map_err(fail)? {
                let Ok(info) = domain.info() else { continue };
                allocation.cpus += u64::from(info.nr_virt_cpu);
                // libvirt says KiB.
                allocation.memory_bytes += info.memory.saturating_mul(1024);
            }
            for pool in inner.conn.list_all_storage_pools(0).map_err(fail)? {
                if !pool.is_active().unwrap_or(false) {
                    continue;
                }
                let (Ok(name), Ok(info)) = (pool.name(), pool.info()) else {
                    continue;
                };
                allocation.pools_free_bytes.insert(name, info.available);
            }
            Ok(Some(allocation))
        })
        .await
    }
}
