//! The KubeVirt backend: a Kubernetes cluster with KubeVirt and CDI. Its settings (the
//! providers file's section for it) are always built, so that a file naming it reads in any
//! build; the provider itself (`backend/`: objects, rules, observing, consoles, the plan lock)
//! is the `kubevirt` cargo feature. Its kinds (`kinds`) are always built too, so that a
//! saved state naming one reads.

pub mod kinds;
pub mod settings;

#[cfg(feature = "kubevirt")]
mod backend;
#[cfg(feature = "kubevirt")]
pub use backend::*;
