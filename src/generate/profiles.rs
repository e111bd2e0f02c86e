//! Profiles for VMs that share their settings: the VMs whose sizing, image, pool and guest
//! settings are all the same become one profile's, and keep only what is theirs (their NICs,
//! and whatever else differs between them).

use std::collections::{BTreeMap, BTreeSet};

use super::Keys;

/// An entry's name and keys.
type Entry = (String, Keys);

/// The keys that make VMs one kind of VM: equal in all of them, or no profile.
const KIND: &[&str] = &[
    "image",
    "pool",
    "numcpus",
    "memory",
    "cpumodel",
    "virttype",
    "uefi",
    "start",
    "autostart",
    "guestagent",
    "cloudinit",
    "domain",
    "keys",
    "rootpassword",
    "reserveip",
    "reservedns",
];

/// Keys a profile never holds: what is each VM's own.
const OWN: &[&str] = &["nets"];

/// The profiles, and the VMs with what they share replaced by `profile`. A profile is made for
/// two or more VMs of one kind; it also takes every other key they all have alike.
pub(super) fn factor(vms: Vec<Entry>, taken: &BTreeSet<String>) -> (Vec<Entry>, Vec<Entry>) {
    let kind_of = |keys: &Keys| -> String {
        let kind: Vec<&(&str, serde_norway::Value)> =
            keys.iter().filter(|(k, _)| KIND.contains(k)).collect();
        serde_norway::to_string(&kind).unwrap_or_default()
    };
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (_, keys)) in vms.iter().enumerate() {
        groups.entry(kind_of(keys)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    // In the order of their first VM, so the plan reads in the order the VMs were found.
    groups.sort_by_key(|g| g[0]);

    let mut used = taken.clone();
    let mut profiles = Vec::new();
    let mut profile_of: BTreeMap<usize, String> = BTreeMap::new();
    let mut shared_of: BTreeMap<usize, BTreeSet<&'static str>> = BTreeMap::new();
    for group in groups {
        let first = &vms[group[0]].1;
        let shared: Keys = first
            .iter()
            .filter(|(key, value)| {
                !OWN.contains(key)
                    && group
                        .iter()
                        .all(|&i| vms[i].1.iter().any(|(k, v)| k == key && v == value))
            })
            .cloned()
            .collect();
        // A key some VMs have and others leave to the default stays theirs: dropping it would
        // give the ones without it the profile's value.
        let name = profile_name(group.iter().map(|&i| vms[i].0.as_str()), &used);
        used.insert(name.clone());
        for &i in &group {
            profile_of.insert(i, name.clone());
            shared_of.insert(i, shared.iter().map(|(k, _)| *k).collect());
        }
        profiles.push((name, shared));
    }
    let vms = vms
        .into_iter()
        .enumerate()
        .map(|(i, (name, keys))| match profile_of.get(&i) {
            Some(profile) => {
                let shared = &shared_of[&i];
                let mut own: Keys = vec![("profile", profile.clone().into())];
                own.extend(keys.into_iter().filter(|(k, _)| !shared.contains(k)));
                (name, own)
            }
            None => (name, keys),
        })
        .collect();
    (profiles, vms)
}

/// What the VMs' names have in common (`web` for web1 and web2), or `profile`, made unique.
fn profile_name<'a>(names: impl Iterator<Item = &'a str>, used: &BTreeSet<String>) -> String {
    let names: Vec<&str> = names.collect();
    let mut common = names.first().copied().unwrap_or_default().to_string();
    for name in &names[1..] {
        let same = common
            .chars()
            .zip(name.chars())
            .take_while(|(a, b)| a == b)
            .count();
        common = common.chars().take(same).collect();
    }
    let common = common
        .trim_end_matches(|c: char| c.is_ascii_digit() || "-_.".contains(c))
        .to_string();
    let base = if common.is_empty() {
        "profile".to_string()
    } else {
        format!("{common}-profile")
    };
    let mut name = base.clone();
    let mut n = 2;
    while used.contains(&name) {
        name = format!("{base}{n}");
        n += 1;
    }
    name
}
