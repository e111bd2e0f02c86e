//! `plan start|stop|restart`: the plan's VMs, or the ones named, started, stopped or restarted
//! through the same executor as apply (dependency order, stops in reverse; the parallelism
//! limit; progress; Ctrl-C). Only VMs the plan created are touched.

use super::outcome::{Hint, Outcome, Problem, Refusal};
use super::request::{Request, RunOptions};
use super::session::{Goal, Session};
use super::view::{Event, View};
use crate::manifest::Loaded;
use crate::plan::model::spec::Spec;
use crate::plan::{Action, Change, Plan};
use crate::provider::{Observed, Power};

/// Starts, stops or restarts the plan's VMs (all of them when `names` is empty). Unknown
/// names, VMs that do not exist yet and VMs of another plan are refused before anything runs.
pub async fn power(
    request: &Request,
    loaded: &Loaded,
    power: Power,
    names: &[String],
    options: RunOptions,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    let interruption = &options.interruption;
    interruption.listen();
    let result = async {
        let session = Session::open(loaded, Goal::Converge, request, view).await?;
        let lock = session.lock(&options.holder, request, view).await?;
        let ran = async {
            let observed = session.observe(view).await?;
            let parts = power_changes(&session, &observed, power, names)?;
            super::not_interrupted(interruption)?;
            let report = session
                .apply(&parts, options.parallelism, interruption, view)
                .await;
            view.event(Event::Applied {
                report: &report,
                run: match power {
                    Power::Start => "Start",
                    Power::Stop { .. } => "Stop",
                    Power::Restart { .. } => "Restart",
                },
            });
            let wait = match power {
                Power::Stop { .. } => None,
                _ => options.wait,
            };
            let vms = match report.interrupted() {
                0 => Some(session.vms(wait, Some(interruption), view).await),
                _ => None,
            };
            Ok::<_, Refusal>(Outcome::Applied { report, vms })
        }
        .await;
        lock.release(view).await;
        ran
    };
    result.await
}

/// Whether a desired resource is one of the plan's VMs (a libvirt domain, a KubeVirt
/// VirtualMachine).
fn is_vm(spec: &Spec) -> bool {
    spec.id().kind.is_vm()
}

/// One change per VM to power, in each provider's part. Without names, starting and
/// restarting leave out the VMs the plan declares stopped (`start: false`): the lab comes up
/// as declared.
fn power_changes(
    session: &Session,
    observed: &[Observed],
    power: Power,
    names: &[String],
) -> Result<Vec<Plan>, Refusal> {
    session.known_vms(names)?;
    let mut problems = Vec::new();
    let mut parts = Vec::new();
    for (site, observed) in session.sites.iter().zip(observed) {
        let mut changes = Vec::new();
        for wanted in site.desired.resources.iter().filter(|r| is_vm(&r.spec)) {
            let id = wanted.spec.id();
            if !names.is_empty() && !names.contains(&id.name) {
                continue;
            }
            let stops = matches!(power, Power::Stop { .. });
            if names.is_empty() && !stops && !wanted.spec.runs() {
                continue;
            }
            let live = match observed.get(&id) {
                None => {
                    problems.push(Problem::hinted(
                        format!("{id} does not exist on {}", site.shown()),
                        vec![Hint::Apply],
                    ));
                    continue;
                }
                Some(live) => live,
            };
            match &live.owner {
                Some(mark) if mark.plan == session.name => {}
                Some(mark) => {
                    problems.push(
                        format!(
                            "{id} on {} belongs to plan `{}`, not `{}`; siteplan starts and stops \
                         only what the plan created",
                            site.shown(),
                            mark.plan,
                            session.name
                        )
                        .into(),
                    );
                    continue;
                }
                None => {
                    problems.push(
                        format!(
                        "{id} on {} was not created by siteplan; siteplan starts and stops only \
                         what the plan created",
                        site.shown()
                    )
                        .into(),
                    );
                    continue;
                }
            }
            changes.push(Change {
                id,
                entry: Some(wanted.entry.clone()),
                provider: site.label.clone(),
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
                desired: Some(wanted.spec.clone()),
                live: Some(live.spec.clone()),
            });
        }
        parts.push(Plan {
            name: session.name.clone(),
            source: None,
            changes,
            unchanged: 0,
        });
    }
    if problems.is_empty() {
        Ok(parts)
    } else {
        Err(Refusal::Problems(problems))
    }
}
