//! Moving a VM to another host (`plan drain`): libvirt's own migration, which carries the
//! domain's definition (its mark with it) and copies its disks, as the guest sees them, into
//! the volumes made for it on the other host beforehand. A running VM moves live; a stopped
//! one is started paused for the copy and is stopped again there.
//!
//! The copy is whole (`NON_SHARED_DISK`): libvirt copies only a disk's top layer
//! (`NON_SHARED_INC`) for disks given by path, and siteplan's disks are pool volumes, whose path
//! libvirt does not know at that point. So a moved disk also holds its image's blocks.

use virt::connect::Connect;
use virt::sys;

use super::{err, Inner};
use crate::plan::model::spec::ResourceId;
use crate::provider::capability::Migrated;
use crate::provider::ProviderError;

impl Inner {
    pub(super) fn migrate(&self, vm: &str, to: &str) -> Result<Migrated, ProviderError> {
        let id = ResourceId::vm(vm);
        if self.test_driver {
            return Err(ProviderError::Unsupported(
                "libvirt's test driver (the sandbox) moves no VM between hosts".into(),
            ));
        }
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let domain = self.domain(vm)?;
        let running = domain.is_active().map_err(fail)?;
        let there = Connect::open(Some(to)).map_err(|e| {
            ProviderError::Connection(format!("cannot connect to {to}: {}", err(e)))
        })?;
        let mut flags = sys::VIR_MIGRATE_LIVE
            | sys::VIR_MIGRATE_PERSIST_DEST
            | sys::VIR_MIGRATE_UNDEFINE_SOURCE
            | sys::VIR_MIGRATE_NON_SHARED_DISK;
        if running {
            if let Some(why) =
                crate::provider::crashpoint::injected_failure(&format!("live migration of {id}"))
            {
                return Err(ProviderError::backend(&id, why));
            }
        } else {
            // Its disks are copied by the running QEMU: paused, the guest does not run.
            domain
                .create_with_flags(sys::VIR_DOMAIN_START_PAUSED)
                .map_err(fail)?;
            flags |= sys::VIR_MIGRATE_PAUSED;
        }
        match domain.migrate(&there, flags, None, None, 0) {
            Ok(moved) => {
                if !running {
                    moved.destroy().map_err(fail)?;
                }
                Ok(Migrated { live: running })
            }
            Err(e) => {
                // It stays where it was, as it was.
                if !running {
                    let _ = domain.destroy();
                }
                Err(fail(e))
            }
        }
    }
}
