//! `plan diff`, `plan apply` and `plan destroy`: observe, plan, show, confirm, apply, report.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use crate::apply::{self, Outcome, Progress, Status};
use crate::manifest::Loaded;
use crate::plan::desired::{self, Desired};
use crate::plan::{self, render, Action, Change, Plan};
use crate::provider::spec::{ResourceKind, Spec};
use crate::provider::{Provider, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Diff,
    Apply,
    Destroy,
}

pub struct Options {
    pub mode: Mode,
    pub provider: Option<String>,
    pub name: Option<String>,
    pub yes: bool,
    pub parallelism: usize,
}

const EXIT_ERROR: u8 = 1;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_ERROR)
}

/// Opens the provider named on the command line, or the default one: the local libvirt when it
/// answers, else the sandbox. Says which.
fn open_provider(choice: Option<&str>) -> Result<Arc<dyn Provider>, String> {
    #[cfg(feature = "libvirt")]
    {
        use crate::provider::libvirt::LibvirtProvider;
        use crate::provider::sandbox::{self, Sandbox};
        let sandbox = || -> Result<Arc<dyn Provider>, String> {
            let dir = sandbox::default_dir();
            Ok(Arc::new(Sandbox::open(&dir).map_err(|e| e.to_string())?))
        };
        match choice {
            Some("sandbox") => sandbox(),
            Some(uri) => Ok(Arc::new(
                LibvirtProvider::connect(uri).map_err(|e| e.to_string())?,
            )),
            None => match LibvirtProvider::connect("qemu:///system") {
                Ok(p) => Ok(Arc::new(p)),
                Err(_) => sandbox(),
            },
        }
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = choice;
        Err("this build of siteplan has no provider (build it with the `libvirt` feature)".into())
    }
}

pub fn run(loaded: &Loaded, file: &Path, options: &Options) -> ExitCode {
    let name = options.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map_or_else(|| "plan".into(), |s| s.to_string_lossy().into_owned())
    });
    let base = file.parent().unwrap_or(Path::new("."));
    let desired = if options.mode == Mode::Destroy {
        Desired::default()
    } else {
        match desired::desired(&loaded.manifest, &name, base) {
            Ok(d) => d,
            Err(e) => return fail(e),
        }
    };
    let provider = match open_provider(options.provider.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    eprintln!("Provider: {} ({})", provider.kind(), provider.endpoint());

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async {
        let mut ids: Vec<_> = desired.resources.iter().map(|r| r.spec.id()).collect();
        ids.extend(desired.external.iter().cloned());
        let scope = Scope {
            plan: name.clone(),
            ids,
        };
        let observed = match provider.observe(&scope).await {
            Ok(o) => o,
            Err(e) => return fail(e),
        };
        let table = |kind: ResourceKind, attr: &str| provider.disruption(kind, attr);
        let plan = match plan::plan(&name, &desired, &observed, &table) {
            Ok(p) => p,
            Err(problems) => {
                for p in &problems {
                    eprintln!("error: {p}");
                }
                eprintln!("Nothing was changed.");
                return ExitCode::from(EXIT_ERROR);
            }
        };
        let _ = std::io::stdout().write_all(render::human(&plan).as_bytes());
        if options.mode == Mode::Diff || plan.is_empty() {
            if plan.is_empty() && options.mode == Mode::Apply {
                vm_table(provider.as_ref(), &desired, loaded).await;
            }
            return ExitCode::SUCCESS;
        }
        if !options.yes && !confirm(&plan, options.mode) {
            eprintln!("Nothing was changed.");
            return ExitCode::from(EXIT_ERROR);
        }
        let progress: Arc<dyn Progress> = Arc::new(Lines::new(plan.changes.len()));
        // Ctrl-C: start nothing more, let what runs finish, report, exit 130.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nInterrupted: starting nothing more; waiting for the changes in progress."
                );
                on_signal.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let report = apply::apply_until(
            &plan,
            &desired,
            provider.clone(),
            options.parallelism,
            progress,
            stop,
        )
        .await;
        eprintln!(
            "\n{}: {} done, {} failed, {} skipped.",
            if options.mode == Mode::Destroy {
                "Destroy"
            } else {
                "Apply"
            },
            report.succeeded(),
            report.failed(),
            report.skipped()
        );
        if options.mode == Mode::Apply {
            vm_table(provider.as_ref(), &desired, loaded).await;
        }
        if report.interrupted() > 0 {
            eprintln!(
                "{} change{} not started; run the same command again to finish.",
                report.interrupted(),
                if report.interrupted() == 1 { "" } else { "s" }
            );
            ExitCode::from(130)
        } else if report.failed() > 0 {
            ExitCode::from(EXIT_ERROR)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// Asks on a terminal; refuses without one (use --yes).
fn confirm(plan: &Plan, mode: Mode) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: not a terminal, so not asking: pass --yes to {}",
            if mode == Mode::Destroy {
                "destroy"
            } else {
                "apply"
            }
        );
        return false;
    }
    let destructive = plan.count(Action::Delete) + plan.count(Action::Replace);
    eprint!(
        "\nDo you want to {} these changes{}? Only 'yes' is accepted: ",
        if mode == Mode::Destroy {
            "destroy with"
        } else {
            "apply"
        },
        if destructive > 0 {
            format!(" ({destructive} delete or replace)")
        } else {
            String::new()
        }
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

/// Progress as timestamped lines: readable in CI logs and on terminals alike.
struct Lines {
    total: usize,
    done: Mutex<usize>,
}

impl Lines {
    fn new(total: usize) -> Self {
        Lines {
            total,
            done: Mutex::new(0),
        }
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Replace => "replacing",
        Action::Delete => "deleting",
    }
}

impl Progress for Lines {
    fn started(&self, change: &Change) {
        eprintln!("[{}] {} {}", now(), verb(change.action), change.id);
    }

    fn finished(&self, outcome: &Outcome) {
        let n = {
            let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            *done += 1;
            *done
        };
        let line = match &outcome.status {
            Status::Done(summary) => format!("ok: {summary} ({:.1}s)", outcome.seconds),
            Status::Failed(message) => format!("FAILED: {message}"),
            Status::Skipped(cause) => format!("skipped, because {cause} failed"),
            Status::Interrupted => "not started (interrupted)".to_string(),
        };
        eprintln!("[{}] {}/{} {} {}", now(), n, self.total, outcome.id, line);
    }
}

/// The plan's VMs: where they run, whether they run, and their addresses (from the provider;
/// else the plan's static ones, marked as such).
async fn vm_table(provider: &dyn Provider, desired: &Desired, loaded: &Loaded) {
    let vms: Vec<&str> = desired
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Vm(vm) => Some(vm.name.as_str()),
            _ => None,
        })
        .collect();
    if vms.is_empty() {
        return;
    }
    let scope = Scope {
        plan: String::new(),
        ids: vms
            .iter()
            .map(|v| crate::provider::ResourceId::vm(v))
            .collect(),
    };
    let observed = provider.observe(&scope).await.unwrap_or_default();
    let width = vms.iter().map(|v| v.len()).max().unwrap_or(2).max(2);
    let mut out = format!("\n{:width$}  {:10}  {:8}  IP\n", "VM", "PROVIDER", "STATE");
    for vm in vms {
        let state = match observed.get(&crate::provider::ResourceId::vm(vm)) {
            Some(r) if r.active => "running",
            Some(_) => "stopped",
            None => "missing",
        };
        let ips = provider.addresses(vm).await.unwrap_or_default();
        let ips = if ips.is_empty() {
            let fixed: Vec<String> = match loaded.manifest.get(vm).map(|e| &e.kind) {
                Some(crate::manifest::model::EntryKind::Vm(v)) => v
                    .nets
                    .iter()
                    .filter_map(|n| n.ip.as_ref())
                    .map(|ip| format!("{} (static)", ip.value))
                    .collect(),
                _ => Vec::new(),
            };
            if fixed.is_empty() {
                "-".to_string()
            } else {
                fixed.join(", ")
            }
        } else {
            ips.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "{vm:width$}  {:10}  {state:8}  {ips}\n",
            provider.kind()
        ));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}
