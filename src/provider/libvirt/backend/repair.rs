//! The repairs an apply makes: a resource a killed run left unmarked, a VM's NICs left on a
//! network made again.

use async_trait::async_trait;

use super::{LibvirtProvider, Touched};
use crate::plan::model::spec::Spec;
use crate::provider::capability;
use crate::provider::{Done, Owner, ProviderError};

#[async_trait]
impl capability::Repair for LibvirtProvider {
    async fn claim(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let touched = || Touched::spec(spec).and_lock_of(&owner.plan);
        let (spec, owner) = (spec.clone(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.claim(&spec, &owner)),
        )
        .await
    }

    async fn reattach(
        &self,
        vm: &str,
        networks: &[String],
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, networks, owner) = (vm.to_string(), networks.to_vec(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.reattach(&vm, &networks, &owner)),
        )
        .await
    }
}
