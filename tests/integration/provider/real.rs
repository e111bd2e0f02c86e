//! The provider interface on a real libvirtd, local and over ssh, beside objects someone else made with virsh.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard keeps the other real-libvirtd tests out for the whole test, awaits included.
#[allow(clippy::await_holding_lock)]
async fn real_libvirtd_manages_every_resource_kind() {
    let Some((_held, uri)) = crate::harness::libvirtd("real_libvirtd_manages_every_resource_kind")
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    // The test guests have no OS to answer an ACPI shutdown: do not wait a minute for them.
    let provider = LibvirtProvider::connect(&uri)
        .expect("connect")
        .with_shutdown_timeout(std::time::Duration::from_secs(2));
    let root = PathBuf::from(
        std::env::var("SITEPLAN_TEST_POOL_ROOT")
            .unwrap_or_else(|_| "/var/lib/libvirt/siteplan-test".into()),
    );
    let _ = std::fs::create_dir_all(&root);
    let foreign = make_foreign_libvirt(&uri, &root);
    let lab = lab("spt", &root.join("lab"), tmp.path());
    exercise(&provider, &lab, &foreign, true).await;
    remove_foreign_libvirt(&uri, &foreign);
}

/// Pre-existing objects on a real libvirtd, made with virsh as a user would.
fn make_foreign_libvirt(uri: &str, root: &Path) -> Foreign {
    let dir = root.join("theirs");
    let _ = std::fs::create_dir_all(&dir);
    let xml_dir = tempfile::tempdir().expect("tmp");
    let write = |name: &str, text: &str| {
        let p = xml_dir.path().join(name);
        std::fs::write(&p, text).expect("xml");
        p
    };
    let net = write("net.xml", "<network><name>theirs-net</name><bridge name='theirs0'/><ip address='10.77.0.1' prefix='24'/></network>");
    let pool = write(
        "pool.xml",
        &format!(
            "<pool type='dir'><name>theirs-pool</name><target><path>{}</path></target></pool>",
            dir.display()
        ),
    );
    let dom = write(
        "dom.xml",
        "<domain type='qemu'><name>theirs-vm</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os><features><acpi/></features></domain>",
    );
    let virsh = |args: &[&str]| {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(uri)
            .args(args)
            .output()
            .expect("virsh");
        assert!(
            out.status.success(),
            "virsh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    remove_foreign_libvirt(uri, &foreign());
    virsh(&["net-define", net.to_str().expect("path")]);
    virsh(&["net-start", "theirs-net"]);
    virsh(&["pool-define", pool.to_str().expect("path")]);
    virsh(&["pool-start", "theirs-pool"]);
    virsh(&[
        "vol-create-as",
        "theirs-pool",
        "theirs.img",
        "10M",
        "--format",
        "raw",
    ]);
    virsh(&["define", dom.to_str().expect("path")]);
    foreign()
}

fn remove_foreign_libvirt(uri: &str, foreign: &Foreign) {
    for args in [
        vec!["undefine", foreign.vm.as_str()],
        vec![
            "vol-delete",
            "--pool",
            foreign.pool.as_str(),
            foreign.volume.1.as_str(),
        ],
        vec!["pool-destroy", foreign.pool.as_str()],
        vec!["pool-undefine", foreign.pool.as_str()],
        vec!["net-destroy", foreign.network.as_str()],
        vec!["net-undefine", foreign.network.as_str()],
    ] {
        let _ = Command::new("virsh")
            .arg("-c")
            .arg(uri)
            .args(&args)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard keeps the other real-libvirtd tests out for the whole test, awaits included.
#[allow(clippy::await_holding_lock)]
async fn remote_libvirt_over_ssh_manages_every_resource_kind() {
    let Some((_held, ssh, local)) =
        crate::harness::ssh_libvirtd("remote_libvirt_over_ssh_manages_every_resource_kind")
    else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let provider = LibvirtProvider::connect(&ssh)
        .expect("connect over ssh")
        .with_shutdown_timeout(std::time::Duration::from_secs(2));
    let root = PathBuf::from(
        std::env::var("SITEPLAN_TEST_POOL_ROOT")
            .unwrap_or_else(|_| "/var/lib/libvirt/siteplan-test".into()),
    );
    let _ = std::fs::create_dir_all(&root);
    // Someone else's objects, made on the same daemon through its local socket.
    let foreign = make_foreign_libvirt(&local, &root);
    let lab = lab("spr", &root.join("remote"), tmp.path());
    exercise(&provider, &lab, &foreign, true).await;
    remove_foreign_libvirt(&local, &foreign);
}
