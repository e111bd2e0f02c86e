//! A lab of real guests over three libvirt hosts in namespaces (`.ci/hosts`), each reached over
//! ssh as a user reaches a remote host: a host filled by hand gets nothing and a lab that does
//! not fit is refused before anything changes; then `examples/bootlab.yml`'s three guests are
//! placed one per host, boot (`--wait`: cloud-init has run, as the guest agent says through
//! libvirt), stay where they are, and `destroy` leaves nothing of the plan on any host. Each host
//! is looked at through its own libvirtd, never through a guest's address.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report

use std::time::Instant;

use virt::connect::Connect;

use crate::guests::Guest;
use crate::harness::{Plan, Ran, TestHost};

const PREFIX: &str = "spgroup";
/// The third guest's static address, reserved in the network's DHCP and named in its DNS.
const THIRD_IP: &str = "10.96.8.30";
const POOL_PATH: &str = "/var/lib/libvirt/images/spgroup";
const HANDMADE: &str = "handmade-filler";

struct Lab {
    tmp: tempfile::TempDir,
    image: std::path::PathBuf,
}

impl Lab {
    /// `plan ARGS examples/bootlab.yml` on the group, with the lab's parameters and `more`.
    fn plan(&self, args: &[&str], more: &[&str]) -> Ran {
        self.plan_with(args, more, None)
    }

    /// `plan`, with `SITEPLAN_FAIL_ON` set to `fail_on` when given.
    fn plan_with(&self, args: &[&str], more: &[&str], fail_on: Option<&str>) -> Ran {
        let plan = Plan::new(args);
        let plan = match fail_on {
            Some(address) => plan.env("SITEPLAN_FAIL_ON", address),
            None => plan,
        };
        plan.providers(
            &self.tmp.path().join("providers.yml"),
            &self.tmp.path().join("state"),
        )
        .args(&["examples/bootlab.yml"])
        .args(&["--allow-read", &self.image.display().to_string()])
        .params(&[
            &format!("image_dir={}", self.image.display()),
            &format!("pool_path={POOL_PATH}"),
            &format!("prefix={PREFIX}"),
            "subnet=10.96.8",
            &format!("third_ip={THIRD_IP}"),
            "root_password=group-Root-4711",
        ])
        .params(more)
        .run()
    }
}

/// Whatever happens, the guests do not outlive the test.
impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.plan(&["destroy", "--yes"], &[]);
    }
}

/// The names of the domains, networks and pools a host holds.
fn holdings(host: &TestHost) -> (Vec<String>, Vec<String>, Vec<String>) {
    let conn = Connect::open(Some(&host.local)).expect("the host's libvirtd");
    let names = |list: Vec<String>| {
        let mut list = list;
        list.sort();
        list
    };
    let domains = conn
        .list_all_domains(0)
        .expect("domains")
        .iter()
        .filter_map(|d| d.name().ok())
        .collect();
    let networks = conn
        .list_all_networks(0)
        .expect("networks")
        .iter()
        .filter_map(|n| n.name().ok())
        .collect();
    let pools = conn
        .list_all_storage_pools(0)
        .expect("pools")
        .iter()
        .filter_map(|p| p.name().ok())
        .collect();
    (names(domains), names(networks), names(pools))
}

/// Defines (and never starts) a domain that takes all but `left_mib` of the host's memory, as
/// a person's VM would: placement counts what is defined, whoever made it.
fn fill_by_hand(host: &TestHost, left_mib: u64) {
    let conn = Connect::open(Some(&host.local)).expect("the host's libvirtd");
    let total_kib = conn.node_info().expect("node info").memory;
    let kib = total_kib.saturating_sub(left_mib * 1024);
    let xml = format!(
        "<domain type='qemu'><name>{HANDMADE}</name><memory unit='KiB'>{kib}</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><features><acpi/></features>\
         </domain>"
    );
    conn.define_domain_xml(&xml).expect("the hand-made domain");
}

fn unfill(host: &TestHost) {
    let conn = Connect::open(Some(&host.local)).expect("the host's libvirtd");
    // Looked for among all (a lookup of one that is not there has libvirt print an error).
    for domain in conn.list_all_domains(0).expect("domains") {
        if domain.name().is_ok_and(|n| n == HANDMADE) {
            let _ = domain.undefine();
        }
    }
}

#[test]
fn real_guests_are_placed_over_three_hosts_by_room_and_leave_nothing_behind() {
    let test = "real_guests_are_placed_over_three_hosts_by_room_and_leave_nothing_behind";
    let Some((_held, hosts)) = crate::harness::hosts(test) else {
        return;
    };
    let Some(image) = crate::guests::guest_image(test) else {
        return;
    };
    assert!(hosts.len() >= 3, "three hosts: {}", hosts.len());
    let hosts = &hosts[..3];
    let tmp = tempfile::tempdir().expect("tmp");
    let mut file = String::from("default: lab\nproviders:\n");
    for h in hosts {
        file.push_str(&format!(
            "  - {{name: {}, type: libvirt, uri: '{}'}}\n",
            h.name, h.uri
        ));
    }
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    file.push_str(&format!(
        "groups:\n  - {{name: lab, hosts: [{}]}}\n",
        names.join(", ")
    ));
    std::fs::write(tmp.path().join("providers.yml"), file).expect("providers file");
    let lab = Lab { tmp, image };
    let _ = lab.plan(&["destroy", "--yes", "--plan-moved"], &[]);
    unfill(&hosts[0]);

    // The first host is full (by hand): three guests that each take more than half of a host
    // fit on the other two only once each.
    fill_by_hand(&hosts[0], 256);
    let total_mib = Connect::open(Some(&hosts[1].local))
        .expect("libvirtd")
        .node_info()
        .expect("node info")
        .memory
        / 1024;
    let big = format!("memory={}", total_mib / 2 + 100);
    let refused = lab.plan(&["apply", "--yes"], &[&big]);
    unfill(&hosts[0]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    let h1 = &hosts[0].name;
    assert!(
        refused.stderr.contains(&format!(
            "VM `{PREFIX}3` ({} MiB memory, 1 CPUs) fits on no host of the group: {h1}: 256 MiB of",
            total_mib / 2 + 100
        )),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("Nothing was changed."),
        "{}",
        refused.stderr
    );
    for host in hosts {
        let (domains, _, _) = holdings(host);
        assert!(
            domains.is_empty(),
            "{} holds {domains:?} after a refused apply",
            host.name
        );
    }

    // The first host's libvirtd starts without any network hook (an earlier run's went with
    // its destroy), as a host that never had a spanning network.
    restart_libvirtd(&hosts[0]);

    // Room everywhere: one guest per host, each booted.
    let started = Instant::now();
    let applied = lab.plan(&["apply", "--yes", "--wait", "--wait-timeout", "480"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    crate::harness::report(&format!(
        "{test}: three guests over three hosts ready after {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    for (i, host) in hosts.iter().enumerate() {
        let vm = format!("{PREFIX}{}", i + 1);
        assert!(
            applied.stderr.contains(&format!(
                "  {vm} on {} (new: the most memory left)",
                host.name
            )),
            "{}",
            applied.stderr
        );
        let (domains, networks, pools) = holdings(host);
        assert_eq!(domains, std::slice::from_ref(&vm), "{}", host.name);
        assert!(networks.contains(&format!("{PREFIX}net")), "{networks:?}");
        assert!(pools.contains(&format!("{PREFIX}pool")), "{pools:?}");
        let conn = Connect::open(Some(&host.local)).expect("libvirtd");
        let domain = conn.lookup_domain_by_name(&vm).expect("the guest");
        assert!(
            domain.is_active().expect("state"),
            "{vm} runs on {}",
            host.name
        );
    }
    // The home's libvirtd started before any network hook was there: the apply says it will
    // join the tunnel again after a network restart only once it has restarted.
    assert!(
        applied
            .text()
            .contains("only once libvirt itself has restarted"),
        "{}",
        applied.text()
    );
    let again = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(again.code(), Some(0), "{}", again.text());
    assert!(
        again
            .stderr
            .contains(&format!("  {PREFIX}1 on {h1} (holds it)")),
        "{}",
        again.stderr
    );

    one_segment_over_three_hosts(&lab, hosts);
    drain_moves_a_running_guest_live(&lab, hosts);

    let destroyed = lab.plan(&["destroy", "--yes"], &[]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    for host in hosts {
        let (domains, networks, pools) = holdings(host);
        assert!(domains.is_empty(), "{}: {domains:?}", host.name);
        assert!(
            !networks.iter().any(|n| n.starts_with(PREFIX)),
            "{}: {networks:?}",
            host.name
        );
        assert_eq!(pools, ["default"], "{}", host.name);
        assert!(
            !host_links(host).contains("spx"),
            "{}: a tunnel device is left",
            host.name
        );
    }
}

/// The lab's network is one segment over the three hosts: the first holds its DHCP (its
/// leases include the guests on the other two, whose own networks are a bridge alone), and the
/// tunnel is joined again after the network restarts: by the next apply while the host's
/// libvirtd has not started since the tunnel's hook was written, by the hook after.
fn one_segment_over_three_hosts(lab: &Lab, hosts: &[TestHost]) {
    let network = format!("{PREFIX}net");
    for (i, host) in hosts.iter().enumerate() {
        let xml = network_xml(host, &network);
        if i == 0 {
            assert!(xml.contains("<dhcp>"), "{}: {xml}", host.name);
        } else {
            assert!(
                xml.contains("<forward mode='bridge'/>"),
                "{}: {xml}",
                host.name
            );
            assert!(!xml.contains("<ip"), "{}: {xml}", host.name);
        }
    }
    let leases = dhcp_leases(&hosts[0], &network);
    // The third guest's address is static (see `addresses_across_hosts`): the second asks.
    for (i, host) in hosts.iter().enumerate().skip(1).take(1) {
        let vm = format!("{PREFIX}{}", i + 1);
        let mac = domain_mac(host, &vm);
        assert!(
            leases.contains(&mac),
            "{vm} on {} holds no lease from {}'s DHCP: {leases}",
            host.name,
            hosts[0].name
        );
        assert!(
            dhcp_leases(host, &network).trim().lines().count() <= 2,
            "{}: a lease of its own",
            host.name
        );
    }
    crate::harness::report(&format!(
        "{}'s leases on {network}, for guests on every host:\n{leases}",
        hosts[0].name
    ));
    addresses_across_hosts(hosts, &network);
    // The VM table shows those leases, asked of the network's home.
    let status = lab.plan(&["status"], &[]);
    assert!(status.ok(), "{}", status.text());
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("vm/{PREFIX}2 ")))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains("10.96.8.1"), "{}", status.stdout);
    assert!(row.contains("(lease"), "{}", status.stdout);

    // The home's network restarts; its libvirtd has not run the tunnel's hook yet.
    restart_network(&hosts[0], &network);
    let drifted = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(drifted.code(), Some(2), "{}", drifted.text());
    assert!(
        drifted
            .stdout
            .contains(&format!("~ tunnel/{network} on {}", hosts[0].name)),
        "{}",
        drifted.stdout
    );
    let mended = lab.plan(&["apply", "--yes"], &[]);
    assert!(mended.ok(), "{}", mended.text());
    assert!(host_links(&hosts[0]).contains(&format!("master {network}")));
    // Once libvirtd has started with the hook there, the hook joins the bridge itself.
    restart_libvirtd(&hosts[0]);
    restart_network(&hosts[0], &network);
    let clean = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(clean.code(), Some(0), "{}", clean.text());
}

/// A static address, its DHCP reservation and its DNS record work across hosts: the home's
/// network holds the reservation and the record of the guest on the third host; the guest on
/// the second, whose lease came over the tunnel, has the home's DNS give it the third's
/// address by name, and reaches that address (its ARP answered by the third guest, through the
/// tunnels of two hosts that are not the home). Asked inside the guest through its agent.
fn addresses_across_hosts(hosts: &[TestHost], network: &str) {
    let third = format!("{PREFIX}3");
    let mac = domain_mac(&hosts[2], &third);
    let home = network_xml(&hosts[0], network);
    assert!(
        home.lines()
            .any(|l| l.contains("<host ") && l.contains(&mac) && l.contains(THIRD_IP)),
        "{}: no reservation of {mac} ({third} on {}):\n{home}",
        hosts[0].name,
        hosts[2].name
    );
    assert!(
        home.contains(&format!("<host ip='{THIRD_IP}'>")),
        "{}: no DNS record of {third}:\n{home}",
        hosts[0].name
    );

    let conn = Connect::open(Some(&hosts[1].local)).expect("libvirtd");
    let second = Guest::find(&conn, &format!("{PREFIX}2"));
    second.wait_for_agent();
    let answer = second.run(&dns_query(&third, "10.96.8.1"));
    assert_eq!(
        answer.trim(),
        THIRD_IP,
        "{}'s DNS, asked from {}",
        hosts[0].name,
        hosts[1].name
    );
    // A connection to a port nobody listens on: what matters is the ARP it takes.
    let arp = second.run(&format!(
        "timeout 5 bash -c ': > /dev/tcp/{THIRD_IP}/9' 2>/dev/null; cat /proc/net/arp"
    ));
    assert!(
        arp.lines()
            .any(|l| l.starts_with(&format!("{THIRD_IP} ")) && l.contains(&mac)),
        "{PREFIX}2 on {} did not reach {third} on {}:\n{arp}",
        hosts[1].name,
        hosts[2].name
    );
    crate::harness::report(&format!(
        "{PREFIX}2 on {} found {third} ({THIRD_IP}, on {}) by name through {}'s DNS, and its \
         MAC by ARP",
        hosts[1].name, hosts[2].name, hosts[0].name
    ));
}

/// A shell command that asks `server` for `name`'s address (an A query, by the guest's
/// Python: the test image has no DNS tools) and prints it.
fn dns_query(name: &str, server: &str) -> String {
    format!(
        "python3 - <<'PY'\n\
         import socket, struct\n\
         name = b''.join(bytes([len(p)]) + p for p in b'{name}'.split(b'.')) + b'\\0'\n\
         query = struct.pack('>HHHHHH', 0x5350, 0x0100, 1, 0, 0, 0) + name + struct.pack('>HH', 1, 1)\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(5)\n\
         s.sendto(query, ('{server}', 53))\n\
         reply = s.recv(512)\n\
         answers = struct.unpack('>H', reply[6:8])[0]\n\
         print('.'.join(str(b) for b in reply[-4:]) if answers else 'no answer')\n\
         PY\n"
    )
}

/// `plan drain` of the second host moves its guest, running, to the first (the most memory
/// left, then the group's order), its disk with it; the second host keeps nothing of the plan
/// and the lab is converged, with the guest still answering through its agent.
fn drain_moves_a_running_guest_live(lab: &Lab, hosts: &[TestHost]) {
    let vm = format!("{PREFIX}2");
    let started = Instant::now();
    let drained = lab.plan(&["drain", &hosts[1].name, "--yes"], &[]);
    assert!(drained.ok(), "{}", drained.text());
    crate::harness::report(&format!(
        "drain of {}: {:.0}s",
        hosts[1].name,
        started.elapsed().as_secs_f64()
    ));
    assert!(
        drained.stderr.contains(&format!(
            "Moved {vm} from {} to {} (live, while it ran",
            hosts[1].name, hosts[0].name
        )),
        "{}",
        drained.text()
    );
    let (domains, networks, pools) = holdings(&hosts[1]);
    assert!(domains.is_empty(), "{}: {domains:?}", hosts[1].name);
    assert!(
        !networks.iter().any(|n| n.starts_with(PREFIX)),
        "{}: {networks:?}",
        hosts[1].name
    );
    assert_eq!(pools, ["default"], "{}", hosts[1].name);
    let (domains, _, _) = holdings(&hosts[0]);
    assert_eq!(
        domains,
        [format!("{PREFIX}1"), vm.clone()],
        "{}",
        hosts[0].name
    );
    let conn = Connect::open(Some(&hosts[0].local)).expect("libvirtd");
    assert!(conn
        .lookup_domain_by_name(&vm)
        .expect("moved")
        .is_active()
        .expect("state"));
    let again = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(again.code(), Some(0), "{}", again.text());
    assert!(
        again
            .stderr
            .contains(&format!("  {vm} on {} (holds it)", hosts[0].name)),
        "{}",
        again.stderr
    );
    // Its guest runs on where it was: its agent answers, and cloud-init's work is still done.
    let status = lab.plan(&["status"], &[]);
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("vm/{vm} ")))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains("agent"), "{}", status.stdout);

    // A VM that cannot move live (the failure is injected) is stopped, moved stopped, and
    // started on its new host; the other moves live, and the first host is left empty.
    let first = format!("{PREFIX}1");
    let drained = lab.plan_with(
        &["drain", &hosts[0].name, "--yes"],
        &[],
        Some(&format!("live migration of vm/{first}")),
    );
    assert!(drained.ok(), "{}", drained.text());
    assert!(
        drained.stderr.contains(&format!(
            "{first} cannot move live (vm/{first}: injected failure"
        )),
        "{}",
        drained.stderr
    );
    assert!(
        drained
            .stderr
            .contains(&format!("Moved {first} from {} to ", hosts[0].name))
            && drained
                .stderr
                .contains("(stopped, moved, and started there"),
        "{}",
        drained.stderr
    );
    assert!(
        drained
            .stderr
            .contains(&format!("Moved {vm} from {} to ", hosts[0].name)),
        "{}",
        drained.stderr
    );
    let (domains, _, pools) = holdings(&hosts[0]);
    assert!(domains.is_empty(), "{}: {domains:?}", hosts[0].name);
    assert_eq!(pools, ["default"], "{}", hosts[0].name);
    let again = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(again.code(), Some(0), "{}", again.text());
}

/// Restarts a host's libvirtd (`.ci/hosts restart-libvirtd`), as a reboot or an upgrade would;
/// its guests keep running.
fn restart_libvirtd(host: &TestHost) {
    let index = host.name.trim_start_matches('h');
    let restarted = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/hosts"),
    )
    .args(["restart-libvirtd", index])
    .status()
    .expect(".ci/hosts");
    assert!(restarted.success(), "{}'s libvirtd restarted", host.name);
}

fn network_xml(host: &TestHost, network: &str) -> String {
    let conn = Connect::open(Some(&host.local)).expect("libvirtd");
    let net = conn.lookup_network_by_name(network).expect("the network");
    net.xml_desc(0).expect("its XML")
}

fn restart_network(host: &TestHost, network: &str) {
    let conn = Connect::open(Some(&host.local)).expect("libvirtd");
    let net = conn.lookup_network_by_name(network).expect("the network");
    net.destroy().expect("stopped");
    net.create().expect("started");
}

/// The first MAC of a domain's definition.
fn domain_mac(host: &TestHost, vm: &str) -> String {
    let conn = Connect::open(Some(&host.local)).expect("libvirtd");
    let xml = conn
        .lookup_domain_by_name(vm)
        .expect("the guest")
        .xml_desc(0)
        .expect("its XML");
    let at = xml.find("<mac address='").expect("a MAC") + "<mac address='".len();
    xml[at..at + 17].to_string()
}

/// What `virsh net-dhcp-leases` says of a host's network (a test may ask libvirt's own tool).
fn dhcp_leases(host: &TestHost, network: &str) -> String {
    let out = std::process::Command::new("virsh")
        .args(["-c", &host.local, "net-dhcp-leases", network])
        .output()
        .expect("virsh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host's links as `ip -o link` shows them, asked in its network namespace.
fn host_links(host: &TestHost) -> String {
    let index = host.name.trim_start_matches('h');
    let out = std::process::Command::new("ip")
        .args(["-n", &format!("sph{index}"), "-o", "link"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
