//! The executor with a provider that fails on demand and counts how many calls overlap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::plan::model::desired::DesiredResource;
use crate::plan::model::spec::*;
use crate::provider::{Health, HealthStatus, Observed, ProviderError, Scope};

#[derive(Default)]
struct Fake {
    fail: Vec<ResourceId>,
    /// Its connection is lost while making this one.
    lose: Option<ResourceId>,
    /// The provider's own limit.
    takes: Option<usize>,
    order: Mutex<Vec<ResourceId>>,
    running: AtomicUsize,
    most: AtomicUsize,
    /// Each VM's guest: ready after this many asks, or failed.
    guests: Mutex<std::collections::BTreeMap<String, (usize, bool)>>,
}

#[async_trait]
impl Provider for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn endpoint(&self) -> String {
        "memory".into()
    }

    fn parallelism(&self) -> Option<usize> {
        self.takes
    }

    fn lower(
        &self,
        intents: &crate::plan::intent::Intents,
    ) -> Result<crate::plan::model::desired::Desired, String> {
        crate::provider::libvirt::lower::libvirt(intents)
    }
    fn rules(&self) -> &dyn crate::plan::model::rules::Rules {
        &crate::provider::libvirt::rules::LibvirtRules
    }
    async fn health(&self) -> Health {
        Health {
            status: HealthStatus::Ready,
            reason: None,
        }
    }

    async fn observe(&self, _: &Scope) -> Result<Observed, ProviderError> {
        Ok(Observed::default())
    }

    async fn create(&self, spec: &Spec, _: &Owner) -> Result<crate::provider::Done, ProviderError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let id = spec.id();
        self.order.lock().unwrap().push(id.clone());
        if self.fail.contains(&id) {
            return Err(ProviderError::backend(&id, "injected failure"));
        }
        if self.lose.as_ref() == Some(&id) {
            return Err(ProviderError::Connection("lost the connection".into()));
        }
        Ok(crate::provider::Done {
            id,
            summary: "made".into(),
            needs_reboot: false,
        })
    }

    async fn update(
        &self,
        spec: &Spec,
        owner: &Owner,
    ) -> Result<crate::provider::Done, ProviderError> {
        self.create(spec, owner).await
    }

    async fn delete(
        &self,
        id: &ResourceId,
        _: &Owner,
    ) -> Result<crate::provider::Done, ProviderError> {
        Err(ProviderError::Unsupported(format!("{id}")))
    }

    async fn addresses(
        &self,
        _: &[crate::provider::AddressQuery],
    ) -> Result<crate::provider::Addresses, ProviderError> {
        Ok(Default::default())
    }

    fn guest_readiness(&self) -> Option<&dyn capability::GuestReadiness> {
        Some(self)
    }

    fn power_control(&self) -> Option<&dyn capability::PowerControl> {
        Some(self)
    }
}

fn volume(name: &str) -> Spec {
    Spec::Volume(VolumeSpec {
        name: name.into(),
        pool: "default".into(),
        capacity_bytes: Some(1),
        format: VolumeFormat::Qcow2,
        thin: true,
        backing: None,
        source: VolumeSource::Blank,
    })
}

fn vm(name: &str, disk: &str) -> Spec {
    vm_on(name, &[disk])
}

fn vm_on(name: &str, disks: &[&str]) -> Spec {
    Spec::Vm(VmSpec {
        name: name.into(),
        memory_mib: 64,
        vcpus: 1,
        cpu_model: "qemu64".into(),
        virt_type: VirtType::Qemu,
        uefi: false,
        disks: disks
            .iter()
            .map(|disk| DiskSpec {
                pool: "default".into(),
                volume: disk.to_string(),
                bus: Bus::Virtio,
            })
            .collect(),
        nics: Vec::new(),
        seed: None,
        running: true,
        autostart: false,
        kernel: None,
        initrd: None,
        cmdline: None,
        guest_agent: false,
        seed_sha256: None,
    })
}

/// Ten VMs, each on its own volume; volume 3's creation fails.
fn lab() -> (Plan, Desired) {
    let mut desired = Desired::default();
    for i in 0..10 {
        let disk = format!("d{i}");
        desired.resources.push(DesiredResource {
            spec: volume(&disk),
            entry: format!("vm/v{i}"),
            depends_on: Vec::new(),
        });
        desired.resources.push(DesiredResource {
            spec: vm(&format!("v{i}"), &disk),
            entry: format!("vm/v{i}"),
            depends_on: vec![ResourceId::volume("default", &disk)],
        });
    }
    let plan = crate::plan::plan(
        &crate::plan::Identity::named("lab"),
        &desired,
        &Observed::default(),
        &crate::provider::libvirt::rules::LibvirtRules,
    )
    .expect("plan");
    (plan, desired)
}

struct Quiet;
impl Progress for Quiet {
    fn started(&self, _: &Change) {}
    fn finished(&self, _: &Step) {}
}

#[tokio::test]
async fn a_failure_skips_only_its_dependents() {
    let (plan, desired) = lab();
    let fake = Arc::new(Fake {
        fail: vec![ResourceId::volume("default", "d3")],
        ..Fake::default()
    });
    let report = apply(&plan, &desired, fake.clone(), 4, Arc::new(Quiet)).await;
    assert_eq!(report.failed(), 1);
    assert_eq!(report.skipped(), 1, "only vm/v3 waits on d3");
    assert_eq!(report.succeeded(), 18, "every other volume and VM is made");
    let v3 = report
        .steps
        .iter()
        .find(|o| o.id == ResourceId::vm("v3"))
        .unwrap();
    assert!(
        matches!(&v3.status, Status::Skipped(cause) if *cause == ResourceId::volume("default", "d3")),
        "{:?}",
        v3.status
    );
    // Each VM came after its own volume.
    let order = fake.order.lock().unwrap().clone();
    for i in 0..10 {
        if i == 3 {
            assert!(!order.contains(&ResourceId::vm("v3")));
            continue;
        }
        let disk = order
            .iter()
            .position(|id| *id == ResourceId::volume("default", &format!("d{i}")))
            .unwrap();
        let machine = order
            .iter()
            .position(|id| *id == ResourceId::vm(&format!("v{i}")))
            .unwrap();
        assert!(disk < machine, "v{i} before its disk");
    }
}

#[tokio::test]
async fn parallelism_bounds_concurrent_changes() {
    for limit in [1, 3] {
        let (plan, desired) = lab();
        let fake = Arc::new(Fake::default());
        let report = apply(&plan, &desired, fake.clone(), limit, Arc::new(Quiet)).await;
        assert_eq!(report.succeeded(), 20);
        assert_eq!(
            fake.most.load(Ordering::SeqCst),
            limit,
            "at most {limit} at once, and that many used"
        );
    }
}

#[tokio::test]
async fn the_providers_own_limit_holds_whatever_parallelism_says() {
    let (plan, desired) = lab();
    let fake = Arc::new(Fake {
        takes: Some(2),
        ..Fake::default()
    });
    let report = apply(&plan, &desired, fake.clone(), 32, Arc::new(Quiet)).await;
    assert_eq!(report.succeeded(), 20);
    assert_eq!(fake.most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_interrupted_run_starts_nothing_more() {
    let (plan, desired) = lab();
    let fake = Arc::new(Fake::default());
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        stopper.cancel();
    });
    let report = apply_until(
        &plan,
        &desired,
        fake.clone(),
        2,
        Arc::new(Quiet),
        stop,
        across::Links::default(),
    )
    .await;
    assert_eq!(report.steps.len(), 20, "every change is accounted for");
    assert!(
        report.succeeded() >= 2 && report.succeeded() < 20,
        "{} done",
        report.succeeded()
    );
    assert_eq!(report.succeeded() + report.interrupted(), 20);
    assert_eq!(
        fake.order.lock().unwrap().len(),
        report.succeeded(),
        "nothing started after the stop but what finished"
    );
}

#[tokio::test]
async fn a_lost_connection_starts_nothing_more_on_that_provider() {
    let (plan, desired) = lab();
    let fake = Arc::new(Fake {
        lose: Some(ResourceId::volume("default", "d1")),
        ..Fake::default()
    });
    let report = apply(&plan, &desired, fake.clone(), 2, Arc::new(Quiet)).await;
    assert_eq!(report.steps.len(), 20, "every change is accounted for");
    assert_eq!(
        report.failed(),
        1,
        "only the change that met the loss fails"
    );
    assert!(report.lost_connection());
    let started = fake.order.lock().unwrap().len();
    assert_eq!(
        report.succeeded() + 1,
        started,
        "nothing started after the loss but what was in flight"
    );
    assert!(started < 6, "{started} changes were started");
    assert_eq!(report.succeeded() + report.failed() + report.skipped(), 20);
}

/// VMs `db` ← `app` ← `web` (each `depends_on` the one before), powered as `plan start|stop`
/// does: one change per VM that carries what to do.
async fn powered(power: Power) -> Vec<ResourceId> {
    let mut desired = Desired::default();
    let mut changes = Vec::new();
    for (name, needs) in [("web", Some("app")), ("app", Some("db")), ("db", None)] {
        desired.resources.push(DesiredResource {
            spec: vm_on(name, &[]),
            entry: format!("vm/{name}"),
            depends_on: needs.map(ResourceId::vm).into_iter().collect(),
        });
        changes.push(Change {
            id: ResourceId::vm(name),
            entry: Some(format!("vm/{name}")),
            provider: None,
            action: Action::Restart,
            attributes: Vec::new(),
            reason: None,
            disruption: None,
            drift: Vec::new(),
            claim: false,
            adopt: false,
            loses_data: false,
            pending_restart: Vec::new(),
            restart: Some(power),
            reattach: Vec::new(),
            desired: Some(vm_on(name, &[])),
            live: Some(vm_on(name, &[])),
        });
    }
    let plan = Plan {
        name: "lab".into(),
        source: None,
        changes,
        unchanged: 0,
    };
    let fake = Arc::new(Fake::default());
    let report = apply(&plan, &desired, fake.clone(), 10, Arc::new(Quiet)).await;
    assert_eq!(report.succeeded(), 3);
    let order = fake.order.lock().unwrap().clone();
    order
}

#[tokio::test]
async fn vms_start_in_dependency_order_and_stop_in_reverse() {
    let names = |ids: Vec<ResourceId>| -> Vec<String> { ids.into_iter().map(|i| i.name).collect() };
    assert_eq!(names(powered(Power::Start).await), ["db", "app", "web"]);
    assert_eq!(
        names(powered(Power::Stop { grace: None }).await),
        ["web", "app", "db"]
    );
    assert_eq!(
        names(powered(Power::Restart { grace: None }).await),
        ["db", "app", "web"]
    );
}

/// A VM that others wait for is done when its guest is ready; one whose cloud-init fails
/// fails, and what waits for it is skipped; the rest go on.
#[tokio::test]
async fn what_waits_for_a_vm_starts_when_its_guest_is_ready() {
    let mut desired = Desired::default();
    for (name, after) in [
        ("db", None),
        ("app", Some("db")),
        ("bad", None),
        ("web", Some("bad")),
    ] {
        let disk = format!("{name}-disk");
        desired.resources.push(DesiredResource {
            spec: volume(&disk),
            entry: format!("vm/{name}"),
            depends_on: Vec::new(),
        });
        let mut needs = vec![ResourceId::volume("default", &disk)];
        if let Some(after) = after {
            needs.push(ResourceId::vm(after));
            desired.awaited.insert(
                ResourceId::vm(after),
                crate::plan::model::desired::Awaited {
                    ready: crate::provider::ReadinessQuery {
                        vm: after.into(),
                        cloud_init: true,
                        command: None,
                    },
                    timeout: std::time::Duration::from_secs(60),
                },
            );
        }
        desired.resources.push(DesiredResource {
            spec: vm(name, &disk),
            entry: format!("vm/{name}"),
            depends_on: needs,
        });
    }
    let plan = crate::plan::plan(
        &crate::plan::Identity::named("lab"),
        &desired,
        &Observed::default(),
        &crate::provider::libvirt::rules::LibvirtRules,
    )
    .expect("plan");
    let fake = Arc::new(Fake::default());
    fake.guests.lock().unwrap().extend([
        ("db".to_string(), (1, false)),
        ("bad".to_string(), (1, true)),
    ]);
    let report = apply(&plan, &desired, fake.clone(), 4, Arc::new(Quiet)).await;
    let status = |vm: &str| {
        report
            .steps
            .iter()
            .find(|s| s.id == ResourceId::vm(vm))
            .map(|s| s.status.clone())
            .unwrap()
    };
    assert!(
        matches!(status("db"), Status::Done(_)),
        "{:?}",
        status("db")
    );
    assert!(
        matches!(status("app"), Status::Done(_)),
        "{:?}",
        status("app")
    );
    assert!(
        matches!(&status("bad"), Status::Failed(e) if e.to_string().contains("cloud-init failed: runcmd failed")),
        "{:?}",
        status("bad")
    );
    assert!(
        matches!(status("web"), Status::Skipped(_)),
        "{:?}",
        status("web")
    );
    assert_eq!(
        fake.guests.lock().unwrap()["db"].0,
        0,
        "db was asked until it was ready"
    );
}

#[async_trait]
impl capability::GuestReadiness for Fake {
    fn hears_guest_agents(&self) -> bool {
        false
    }
    async fn readiness(
        &self,
        vms: &[crate::provider::ReadinessQuery],
    ) -> Result<std::collections::BTreeMap<String, Readiness>, ProviderError> {
        let mut guests = self.guests.lock().unwrap();
        let mut found = std::collections::BTreeMap::new();
        for vm in vms.iter().map(|q| &q.vm) {
            if let Some((asks, fails)) = guests.get_mut(vm) {
                let ready = match (*asks, *fails) {
                    (0, true) => Readiness::Failed {
                        errors: vec!["runcmd failed".into()],
                        log: vec!["exit 1".into()],
                    },
                    (0, false) => Readiness::Ready,
                    _ => {
                        *asks -= 1;
                        Readiness::Pending("booting".into())
                    }
                };
                found.insert(vm.clone(), ready);
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl capability::PowerControl for Fake {
    async fn power(
        &self,
        vm: &str,
        _: Power,
        owner: &Owner,
    ) -> Result<crate::provider::Done, ProviderError> {
        self.create(&vm_on(vm, &[]), owner).await
    }
}
