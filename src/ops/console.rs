//! `plan console`: a VM of the plan, attached to through its provider's console (libvirt's
//! console stream). The command line moves the bytes.

use crate::provider::capability::{self, Capability};
use std::sync::Arc;

use super::outcome::Refusal;
use super::request::Request;
use super::session::{Goal, Session};
use super::view::View;
use crate::manifest::Loaded;
use crate::provider::{Console, Owner};

/// The console of `vm`, which must be a VM of the plan, created by it and running.
pub async fn console(
    request: &Request,
    loaded: &Loaded,
    vm: &str,
    view: &dyn View,
) -> Result<Arc<dyn Console>, Refusal> {
    let session = Session::open(loaded, Goal::Converge, request, view).await?;
    let (_, site) = session.site_of_vm(vm)?;
    let provider = site.opened.provider.as_ref();
    let refused = |e: crate::provider::ProviderError| Refusal::Invalid(e.to_string());
    capability::require(
        provider.serial_console(),
        provider,
        Capability::SerialConsole,
    )
    .map_err(refused)?
    .console(vm, &Owner::plan(&request.name))
    .await
    .map_err(refused)
}
