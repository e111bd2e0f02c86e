//! The lab's picture from what a session found: each of its sites (a provider, a host of a
//! group) a place, drawn with the plan's changes there and, when known, its VMs' addresses.

use std::collections::BTreeMap;

use super::outcome::VmRow;
use super::session::Session;
use crate::picture::{DrawnFrom, Picture, PlaceInput};
use crate::plan::Plan;
use crate::provider::Observed;

/// The picture of `session`'s sites as `observed`, with each site's part of the plan.
pub(crate) fn of_session(
    session: &Session,
    observed: &[Observed],
    parts: &[Plan],
    rows: &[VmRow],
) -> Picture {
    let places = session
        .sites
        .iter()
        .zip(observed)
        .zip(parts)
        .map(|((site, observed), plan)| {
            let provider = site.shown();
            let addresses: BTreeMap<String, Vec<String>> = rows
                .iter()
                .filter(|r| r.provider == provider)
                .map(|r| {
                    let shown = r.addresses.iter().map(|a| a.to_string()).collect();
                    (r.name.clone(), shown)
                })
                .collect();
            PlaceInput {
                name: provider,
                desired: site.desired.resources.iter().map(|r| &r.spec).collect(),
                observed: Some(observed),
                changes: &plan.changes,
                addresses,
                rules: site.opened.provider.rules(),
            }
        })
        .collect();
    Picture::build(&session.name, DrawnFrom::Live, places)
}
