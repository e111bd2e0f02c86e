//! `plan output`: the lab's VMs as Ansible, ssh and /etc/hosts read them, and `plan ssh`'s
//! command line. Pure functions of an `Inventory`, so every format is a snapshot test.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::ops::{Inventory, InventoryVm};

/// A name Ansible takes as a group: letters, digits and underscores.
fn group(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if cleaned.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// The ssh options every connection to a lab VM takes: lab VMs are made again with the same
/// addresses, so their host keys are not remembered.
const LAB_SSH_OPTIONS: [&str; 4] = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
];

/// An Ansible inventory (YAML): a group for the plan with every VM that has an address, and a
/// group per profile. A VM without one (stopped, missing, no address yet) is left out, and
/// named in a comment: Ansible would otherwise look its name up, and reach whoever has it.
pub fn ansible(inventory: &Inventory) -> String {
    let mut hosts = Map::new();
    let mut absent = String::new();
    let mut profiles: std::collections::BTreeMap<String, Map<String, Value>> = Default::default();
    for vm in &inventory.vms {
        let mut vars = Map::new();
        let Some(ip) = vm.address else {
            let _ = writeln!(absent, "# left out: {} ({}, no address)", vm.name, vm.state);
            continue;
        };
        vars.insert("ansible_host".into(), ip.to_string().into());
        vars.insert("ansible_user".into(), vm.user.clone().into());
        if let Some(key) = &vm.key {
            vars.insert(
                "ansible_ssh_private_key_file".into(),
                key.display().to_string().into(),
            );
        }
        let mut args: Vec<String> = LAB_SSH_OPTIONS.iter().map(|s| s.to_string()).collect();
        if let Some(jump) = &vm.jump {
            args.push(format!("-o ProxyJump={jump}"));
        }
        vars.insert("ansible_ssh_common_args".into(), args.join(" ").into());
        hosts.insert(vm.name.clone(), Value::Object(vars));
        if let Some(profile) = &vm.profile {
            profiles
                .entry(group(&format!("profile_{profile}")))
                .or_default()
                .insert(vm.name.clone(), json!({}));
        }
    }
    let mut children = Map::new();
    children.insert(group(&inventory.plan), json!({ "hosts": hosts }));
    for (name, members) in profiles {
        children.insert(name, json!({ "hosts": members }));
    }
    let document = json!({ "all": { "children": children } });
    let text = serde_norway::to_string(&document).unwrap_or_default();
    format!(
        "# Ansible inventory of plan `{}`, from live state (siteplan `plan output`).\n{absent}{text}",
        inventory.plan
    )
}

/// `Host` entries for ~/.ssh/config (or `ssh -F`).
pub fn ssh_config(inventory: &Inventory) -> String {
    let mut out = format!(
        "# plan `{}`: written by siteplan `plan output --format ssh-config`\n",
        inventory.plan
    );
    for vm in &inventory.vms {
        let Some(ip) = vm.address else {
            let _ = writeln!(out, "\n# {}: no address known ({})", vm.name, vm.state);
            continue;
        };
        let _ = writeln!(out, "\nHost {}", vm.name);
        let _ = writeln!(out, "  HostName {ip}");
        let _ = writeln!(out, "  User {}", vm.user);
        if let Some(key) = &vm.key {
            let _ = writeln!(out, "  IdentityFile {}", key.display());
            let _ = writeln!(out, "  IdentitiesOnly yes");
        }
        if let Some(jump) = &vm.jump {
            let _ = writeln!(out, "  ProxyJump {jump}");
        }
        let _ = writeln!(out, "  StrictHostKeyChecking no");
        let _ = writeln!(out, "  UserKnownHostsFile /dev/null");
    }
    out
}

/// Lines for /etc/hosts: every address of every VM, with its name.
pub fn hosts(inventory: &Inventory) -> String {
    let mut out = format!(
        "# plan `{}` (siteplan `plan output --format hosts`)\n",
        inventory.plan
    );
    for vm in &inventory.vms {
        if vm.addresses.is_empty() {
            let _ = writeln!(out, "# {}: no address ({})", vm.name, vm.state);
        }
        for address in &vm.addresses {
            let _ = writeln!(out, "{}\t{}", address.ip, vm.name);
        }
    }
    out
}

/// The inventory as JSON, with a final newline.
pub fn json(inventory: &Inventory) -> String {
    let mut text = serde_json::to_string_pretty(inventory).unwrap_or_default();
    text.push('\n');
    text
}

/// The `ssh` command line that logs in to `vm` (and runs `command`, if any): the plan's
/// user, key and address, through the libvirt host when it is remote.
pub fn ssh_command(vm: &InventoryVm, command: &[String]) -> Result<Vec<String>, String> {
    let Some(ip) = vm.address else {
        return Err(match vm.state.as_str() {
            "missing" => format!(
                "vm/{} does not exist on its provider, so it has no address; `plan apply` makes it",
                vm.name
            ),
            "running" => format!(
                "vm/{} runs, but no address of it is known yet; `plan status` shows what is known of it",
                vm.name
            ),
            "paused" => format!(
                "vm/{} is paused, and answers nothing until it is resumed; `plan apply` resumes it",
                vm.name
            ),
            state => format!(
                "vm/{} is not running ({state}), so it has no address; `plan start` starts it",
                vm.name
            ),
        });
    };
    let mut args: Vec<String> = LAB_SSH_OPTIONS.iter().map(|s| s.to_string()).collect();
    if let Some(key) = &vm.key {
        args.extend(["-i".to_string(), key.display().to_string()]);
        args.extend(["-o".to_string(), "IdentitiesOnly=yes".to_string()]);
    }
    if let Some(jump) = &vm.jump {
        args.extend(["-J".to_string(), jump.clone()]);
    }
    args.push(format!("{}@{ip}", vm.user));
    if !command.is_empty() {
        args.push("--".to_string());
        args.extend(command.iter().cloned());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ops::{InventoryAddress, InventoryNic};

    fn lab() -> Inventory {
        let vm = |name: &str, ip: Option<&str>, jump: Option<&str>| InventoryVm {
            name: name.into(),
            provider: "lab1".into(),
            state: if ip.is_some() { "running" } else { "stopped" }.into(),
            address: ip.map(|i| i.parse().unwrap()),
            addresses: ip
                .map(|i| InventoryAddress {
                    ip: i.parse().unwrap(),
                    sources: vec!["lease", "agent"],
                })
                .into_iter()
                .collect(),
            nics: vec![InventoryNic {
                network: "labnet".into(),
                mac: "52:54:00:aa:bb:01".into(),
                ip: None,
            }],
            user: "debian".into(),
            key: Some(PathBuf::from("/home/me/.ssh/lab")),
            profile: Some("web-servers".into()),
            image: Some("debian12".into()),
            jump: jump.map(str::to_string),
        };
        Inventory {
            format_version: crate::ops::INVENTORY_FORMAT_VERSION,
            plan: "my-lab".into(),
            vms: vec![
                vm("web1", Some("10.0.0.11"), None),
                vm("web2", Some("10.0.0.12"), Some("admin@host1:2222")),
                vm("web3", None, None),
            ],
        }
    }

    #[test]
    fn every_output_format() {
        let inventory = lab();
        insta::assert_snapshot!("ansible", ansible(&inventory));
        insta::assert_snapshot!("ssh_config", ssh_config(&inventory));
        insta::assert_snapshot!("hosts", hosts(&inventory));
        insta::assert_snapshot!("json", json(&inventory));
    }

    #[test]
    fn the_ssh_command_is_the_plans_user_key_and_address_through_the_host() {
        let inventory = lab();
        let args = ssh_command(&inventory.vms[1], &["uptime".into()]).unwrap();
        assert_eq!(
            args.join(" "),
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -i /home/me/.ssh/lab -o IdentitiesOnly=yes -J admin@host1:2222 \
             debian@10.0.0.12 -- uptime"
        );
        let stopped = ssh_command(&inventory.vms[2], &[]).unwrap_err();
        assert!(
            stopped.contains("vm/web3 is not running (stopped), so it has no address"),
            "{stopped}"
        );
    }
}
