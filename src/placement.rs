//! Which host of a group holds each VM: the VMs a host already holds stay there; each other VM
//! goes, in the plan's order, to the host with the most memory left once it is there, among
//! those it fits on (memory, CPUs, the storage its preallocated disks take, its anti-affinity
//! group). A VM that fits nowhere is refused with what is short on each host, before anything
//! changes. Pure: the hosts' state comes in, the placement goes out.

use std::collections::{BTreeMap, BTreeSet};

/// What a host offers and already holds, as its backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub cpus: u64,
    pub memory_bytes: u64,
    /// The vCPUs and memory of the VMs defined there (any plan's, or made by hand).
    pub allocated_cpus: u64,
    pub allocated_memory_bytes: u64,
    /// Each storage pool's free bytes.
    pub pools: BTreeMap<String, u64>,
    /// Whether new VMs may go there (an unhealthy host keeps what it holds, and gets nothing).
    pub accepts: bool,
    /// Why not, when it does not.
    pub refuses_because: Option<String>,
}

impl Host {
    fn free_memory(&self) -> u64 {
        self.memory_bytes
            .saturating_sub(self.allocated_memory_bytes)
    }
}

/// What a VM of the plan needs of the host that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub vm: String,
    pub cpus: u64,
    pub memory_bytes: u64,
    /// Bytes its preallocated disks take in each pool (thin disks take room as they fill,
    /// and are not counted). A pool the plan makes on every host it uses is not listed.
    pub storage: BTreeMap<String, u64>,
    /// Pools it uses that the plan does not make: they must exist on the host.
    pub pools_used: BTreeSet<String>,
    /// VMs of one anti-affinity group never share a host.
    pub antiaffinity: Option<String>,
    /// The host that holds it now, if one does.
    pub on: Option<String>,
}

/// Where a VM goes, and why there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    pub vm: String,
    pub host: String,
    pub why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// It is there already.
    Holds,
    /// New: the host with the most memory left once it is there.
    MostRoom,
    /// Its host is being drained (`plan drain`): it moves to the host with the most memory
    /// left once it is there.
    Moved,
}

/// Places `needs` on `hosts` (in the order of the group); every VM that fits nowhere is named,
/// with what is short on each host.
pub fn place(needs: &[Need], hosts: &[Host]) -> Result<Vec<Placed>, Vec<String>> {
    let mut hosts: Vec<Host> = hosts.to_vec();
    // Per host, the anti-affinity groups it holds a VM of, and that VM.
    let mut groups_on: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut placed = Vec::new();
    // What is there stays there; its room is already taken (it is defined on the host).
    for need in needs {
        let Some(on) = &need.on else { continue };
        if let Some(group) = &need.antiaffinity {
            groups_on
                .entry(on.clone())
                .or_default()
                .insert(group.clone(), need.vm.clone());
        }
        placed.push(Placed {
            vm: need.vm.clone(),
            host: on.clone(),
            why: Why::Holds,
        });
    }
    let mut problems = Vec::new();
    for need in needs.iter().filter(|n| n.on.is_none()) {
        let mut best: Option<usize> = None;
        let mut short = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let sharing = need.antiaffinity.as_deref().and_then(|group| {
                groups_on
                    .get(&host.name)
                    .and_then(|g| g.get(group))
                    .map(|vm| (group, vm.as_str()))
            });
            match shortfall(need, host, sharing) {
                Some(why) => short.push(format!("{}: {why}", host.name)),
                None => {
                    let roomier = best.is_none_or(|b| {
                        let (a, b) = (&hosts[i], &hosts[b]);
                        // The most memory left; then the fewest vCPUs per CPU; then the first.
                        a.free_memory() > b.free_memory()
                            || a.free_memory() == b.free_memory()
                                && a.allocated_cpus * b.cpus.max(1)
                                    < b.allocated_cpus * a.cpus.max(1)
                    });
                    if roomier {
                        best = Some(i);
                    }
                }
            }
        }
        let Some(i) = best else {
            problems.push(format!(
                "VM `{}` ({}) fits on no host of the group: {}",
                need.vm,
                needs_text(need),
                short.join("; ")
            ));
            continue;
        };
        let host = &mut hosts[i];
        host.allocated_memory_bytes += need.memory_bytes;
        host.allocated_cpus += need.cpus;
        for (pool, bytes) in &need.storage {
            if let Some(free) = host.pools.get_mut(pool) {
                *free = free.saturating_sub(*bytes);
            }
        }
        placed.push(Placed {
            vm: need.vm.clone(),
            host: host.name.clone(),
            why: Why::MostRoom,
        });
        if let Some(group) = &need.antiaffinity {
            groups_on
                .entry(host.name.clone())
                .or_default()
                .insert(group.clone(), need.vm.clone());
        }
    }
    if problems.is_empty() {
        placed.sort_by(|a, b| {
            let at = |p: &Placed| needs.iter().position(|n| n.vm == p.vm);
            at(a).cmp(&at(b))
        });
        Ok(placed)
    } else {
        Err(problems)
    }
}

/// Why `need` does not fit on `host`, if it does not; `sharing`: the VM of its anti-affinity
/// group the host holds already.
fn shortfall(need: &Need, host: &Host, sharing: Option<(&str, &str)>) -> Option<String> {
    if !host.accepts {
        return Some(
            host.refuses_because
                .clone()
                .unwrap_or_else(|| "takes no new VMs".into()),
        );
    }
    if let Some((group, vm)) = sharing {
        return Some(format!("holds `{vm}` of anti-affinity group `{group}`"));
    }
    let mut short = Vec::new();
    if need.memory_bytes > host.free_memory() {
        short.push(format!(
            "{} of {} memory free",
            mib(host.free_memory()),
            mib(host.memory_bytes)
        ));
    }
    if need.cpus > host.cpus {
        short.push(format!("{} CPUs in all", host.cpus));
    }
    for pool in &need.pools_used {
        if !host.pools.contains_key(pool) {
            short.push(format!("no pool `{pool}`"));
        }
    }
    for (pool, bytes) in &need.storage {
        match host.pools.get(pool) {
            Some(free) if free < bytes => {
                short.push(format!("{} free in pool `{pool}`", gib(*free)));
            }
            _ => {}
        }
    }
    (!short.is_empty()).then(|| short.join(", "))
}

fn needs_text(need: &Need) -> String {
    let mut parts = vec![
        format!("{} memory", mib(need.memory_bytes)),
        format!("{} CPUs", need.cpus),
    ];
    for (pool, bytes) in &need.storage {
        parts.push(format!("{} in pool `{pool}`", gib(*bytes)));
    }
    if let Some(group) = &need.antiaffinity {
        parts.push(format!("anti-affinity group `{group}`"));
    }
    parts.join(", ")
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn host(name: &str, memory_gib: u64, allocated_gib: u64) -> Host {
        Host {
            name: name.into(),
            cpus: 4,
            memory_bytes: memory_gib * GIB,
            allocated_cpus: 0,
            allocated_memory_bytes: allocated_gib * GIB,
            pools: BTreeMap::from([("default".to_string(), 100 * GIB)]),
            accepts: true,
            refuses_because: None,
        }
    }

    fn need(vm: &str, memory_gib: u64) -> Need {
        Need {
            vm: vm.into(),
            cpus: 1,
            memory_bytes: memory_gib * GIB,
            storage: BTreeMap::new(),
            pools_used: BTreeSet::from(["default".to_string()]),
            antiaffinity: None,
            on: None,
        }
    }

    fn hosts_of(placed: &[Placed]) -> Vec<(&str, &str)> {
        placed
            .iter()
            .map(|p| (p.vm.as_str(), p.host.as_str()))
            .collect()
    }

    #[test]
    fn new_vms_go_where_most_memory_is_left() {
        let hosts = [host("h1", 8, 6), host("h2", 8, 0), host("h3", 4, 0)];
        let needs = [need("a", 2), need("b", 2), need("c", 2), need("d", 2)];
        let placed = place(&needs, &hosts).expect("fits");
        // h2 has 8 free: a and b go there; then h2 and h3 have 4 left each, and h3 has fewer
        // vCPUs per CPU; then h2 has the most left.
        assert_eq!(
            hosts_of(&placed),
            [("a", "h2"), ("b", "h2"), ("c", "h3"), ("d", "h2")]
        );
    }

    #[test]
    fn what_is_placed_stays_and_anti_affinity_spreads() {
        let hosts = [host("h1", 16, 0), host("h2", 16, 0), host("h3", 16, 0)];
        let mut needs: Vec<Need> = ["m0", "m1", "m2"]
            .iter()
            .map(|m| Need {
                antiaffinity: Some("masters".into()),
                ..need(m, 1)
            })
            .collect();
        needs[1].on = Some("h1".into());
        let placed = place(&needs, &hosts).expect("fits");
        assert_eq!(
            hosts_of(&placed),
            [("m0", "h2"), ("m1", "h1"), ("m2", "h3")]
        );
        assert_eq!(placed[1].why, Why::Holds);
        // A fourth master has no host left.
        needs.push(Need {
            antiaffinity: Some("masters".into()),
            ..need("m3", 1)
        });
        let refused = place(&needs, &hosts).expect_err("no host left");
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].contains("VM `m3`")
                && refused[0].contains("h1: holds `m1` of anti-affinity group `masters`"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_vm_that_fits_nowhere_is_refused_naming_what_is_short_where() {
        let mut small = host("h2", 4, 3);
        small.pools.clear();
        let mut sick = host("h3", 64, 0);
        sick.accepts = false;
        sick.refuses_because = Some("unhealthy: pool `default` is not active".into());
        let hosts = [host("h1", 8, 7), small, sick];
        let big = Need {
            storage: BTreeMap::from([("default".to_string(), 200 * GIB)]),
            ..need("big", 4)
        };
        let refused = place(&[need("ok", 1), big], &hosts).expect_err("too big");
        assert_eq!(
            refused,
            [
                "VM `big` (4096 MiB memory, 1 CPUs, 200.0 GiB in pool `default`) fits on no host \
              of the group: h1: 0 MiB of 8192 MiB memory free, 100.0 GiB free in pool \
              `default`; h2: 1024 MiB of 4096 MiB memory free, no pool `default`; \
              h3: unhealthy: pool `default` is not active"
            ]
        );
    }
}
