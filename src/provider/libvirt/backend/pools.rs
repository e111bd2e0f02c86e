//! Storage pools and their ledger (the volume in each pool that holds the marks of the pool and
//! of its volumes), and taking over a pool a killed run left without a mark.

use super::*;

impl Inner {
    pub(super) fn create_pool(
        &self,
        pool: &PoolSpec,
        mark: &OwnerMark,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let io = |e: std::io::Error| ProviderError::backend(id, e);
        if self.pool(&pool.name).is_ok() {
            return Err(ProviderError::backend(id, "already exists"));
        }
        // Between defining the pool and writing its ledger it has no mark: noted in
        // the plan's lock first, so that only a pool this run was making is taken
        // over if it dies in that window.
        lock::note_unmarked(&self.conn, &owner.plan, &id.to_string())
            .map_err(|e| ProviderError::backend(id, e))?;
        let p = self
            .conn
            .define_storage_pool_xml(&xml::pool_xml(pool).map_err(io)?, 0)
            .map_err(fail)?;
        crashpoint::point("pool defined");
        let started = p.build(0).and_then(|_| p.create(0));
        if let Err(e) = started {
            let _ = p.undefine();
            return Err(fail(e));
        }
        crashpoint::point("pool started");
        p.set_autostart(pool.autostart).map_err(fail)?;
        self.edit_ledger(&pool.name, |l| l.pool = Some(mark.clone()))?;
        Ok(format!("pool {} is active at {}", pool.name, pool.path))
    }

    pub(super) fn update_pool(
        &self,
        want: &PoolSpec,
        have: &PoolSpec,
        live: &LiveResource,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let replace_needed = |what: &str| {
            ProviderError::Unsupported(format!(
                "{id}: changing {what} needs the resource to be replaced"
            ))
        };
        if want.path != have.path {
            return Err(replace_needed("a pool's path"));
        }
        let p = self.pool(&want.name)?;
        if !live.active {
            p.create(0).map_err(fail)?;
        }
        p.set_autostart(want.autostart).map_err(fail)?;
        self.edit_ledger(&want.name, |l| l.pool = Some(mark.clone()))?;
        Ok(format!("pool {} updated", want.name))
    }

    pub(super) fn delete_pool(
        &self,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let p = self.pool(&id.name)?;
        let ledger = self.read_ledger(&p, &id.name)?;
        check_owner(id, ledger.pool.as_ref(), owner)?;
        let left: Vec<String> = p
            .list_volumes()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v != LEDGER_VOLUME)
            .collect();
        if !left.is_empty() {
            return Err(ProviderError::backend(
                id,
                format!(
                    "still holds volumes ({}); delete them first",
                    left.join(", ")
                ),
            ));
        }
        // Without its ledger the pool has no mark until it is gone: noted in the
        // plan's lock first, as for a pool being made.
        lock::note_unmarked(&self.conn, &owner.plan, &id.to_string())
            .map_err(|e| ProviderError::backend(id, e))?;
        if let Ok(vol) = p.lookup_storage_vol_by_name(LEDGER_VOLUME) {
            vol.delete(0).map_err(fail)?;
            self.content.forget(&id.name, LEDGER_VOLUME);
        }
        crashpoint::point("pool ledger deleted");
        if p.is_active().unwrap_or(false) {
            p.destroy().map_err(fail)?;
        }
        crashpoint::point("pool stopped for deletion");
        // Removes the directory if it is empty; a non-empty one is left alone.
        let _ = p.delete(0);
        p.undefine().map_err(fail)?;
        Ok(format!("pool {} deleted", id.name))
    }

    pub(super) fn ledger_lock(&self, pool: &str) -> Arc<Mutex<()>> {
        let mut locks = self.ledger_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(pool.to_string()).or_default().clone()
    }

    /// Reads a pool's ledger, waiting for any write of it in progress.
    pub(super) fn read_ledger(
        &self,
        pool: &StoragePool,
        pool_name: &str,
    ) -> Result<Ledger, ProviderError> {
        let lock = self.ledger_lock(pool_name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.read_ledger_locked(pool, pool_name)
    }

    /// The mark a pool's ledger holds for one of its volumes.
    pub(super) fn read_volume_mark(
        &self,
        pool: &StoragePool,
        pool_name: &str,
        volume: &str,
    ) -> Result<Option<OwnerMark>, ProviderError> {
        if let ContentStore::Files(blobs) = &self.content {
            let lock = self.ledger_lock(pool_name);
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(blobs.volume_mark(pool_name, volume));
        }
        Ok(self.read_ledger(pool, pool_name)?.volumes.remove(volume))
    }

    pub(super) fn read_ledger_locked(
        &self,
        pool: &StoragePool,
        pool_name: &str,
    ) -> Result<Ledger, ProviderError> {
        let Ok(vol) = pool.lookup_storage_vol_by_name(LEDGER_VOLUME) else {
            return Ok(Ledger::default());
        };
        if let Some(ledger) = self.content.ledger(pool_name) {
            return Ok(ledger);
        }
        let bytes = self
            .content
            .read_text(&self.conn, pool_name, &vol)
            .map_err(|e| {
                ProviderError::backend(
                    &ResourceId::pool(pool_name),
                    format!("reading its ledger: {e}"),
                )
            })?;
        Ledger::from_bytes(&bytes)
            .map_err(|e| ProviderError::backend(&ResourceId::pool(pool_name), e))
    }

    /// Read-modify-write of a pool's ledger, serialised per pool.
    pub(super) fn edit_ledger(
        &self,
        pool_name: &str,
        edit: impl FnOnce(&mut Ledger),
    ) -> Result<(), ProviderError> {
        let lock = self.ledger_lock(pool_name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let id = ResourceId::pool(pool_name);
        let pool = self.pool(pool_name)?;
        let vol = match pool.lookup_storage_vol_by_name(LEDGER_VOLUME) {
            Ok(vol) => vol,
            Err(_) => {
                let vxml = xml::volume_xml(
                    LEDGER_VOLUME,
                    LEDGER_CAPACITY,
                    VolumeFormat::Raw,
                    true,
                    None,
                )
                .map_err(|e| ProviderError::backend(&id, e))?;
                StorageVol::create_xml(&pool, &vxml, 0).map_err(|e| {
                    ProviderError::backend(&id, format!("creating its ledger: {}", err(e)))
                })?
            }
        };
        crashpoint::point("ledger volume ready");
        if let ContentStore::Files(blobs) = &self.content {
            edit(blobs.ledgers().entry(pool_name.to_string()).or_default());
            return Ok(());
        }
        let before = self
            .content
            .read_text(&self.conn, pool_name, &vol)
            .map_err(|e| ProviderError::backend(&id, format!("reading its ledger: {e}")))?;
        let mut ledger = Ledger::from_bytes(&before).map_err(|e| ProviderError::backend(&id, e))?;
        edit(&mut ledger);
        let bytes = ledger.to_bytes();
        if bytes.len() as u64 > LEDGER_CAPACITY {
            vol.resize(bytes.len() as u64, 0)
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
        }
        // Zeros over what the ledger held before, and no further: the rest is zero already.
        let mut padded = bytes;
        padded.resize(padded.len().max(before.len()), 0);
        self.content
            .write(&self.conn, pool_name, &vol, &padded)
            .map_err(|e| ProviderError::backend(&id, format!("writing its ledger: {e}")))
    }

    /// A pool is defined before its ledger can exist (the ledger lives in it), and its ledger
    /// goes before it on deletion, so a killed run can leave a pool without a mark. Such a pool
    /// is taken over only if it is exactly where the plan puts it and holds no volume.
    pub(super) fn claim(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        let Spec::Pool(want) = spec else {
            return Err(ProviderError::Unsupported(format!(
                "{id}: only pools are taken over"
            )));
        };
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let p = self.pool(&want.name)?;
        let have = xml::parse_pool(&p.xml_desc(0).map_err(fail)?, false)
            .map_err(|e| ProviderError::backend(&id, e))?;
        let not_ours = || ProviderError::NotOwned {
            id: id.clone(),
            plan: owner.plan.clone(),
        };
        if have.path != want.path {
            return Err(not_ours());
        }
        if !p.is_active().unwrap_or(false) {
            // Killed before its directory was made, perhaps: building an existing one is harmless.
            p.build(0).and_then(|_| p.create(0)).map_err(fail)?;
        }
        let ledger = self.read_ledger(&p, &want.name)?;
        match &ledger.pool {
            Some(mark) if mark.plan != owner.plan => return Err(not_ours()),
            Some(_) => {}
            None => {
                let held: Vec<String> = p
                    .list_volumes()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|v| v != LEDGER_VOLUME)
                    .collect();
                if !held.is_empty() {
                    return Err(ProviderError::backend(
                        &id,
                        format!(
                            "exists without siteplan's mark and holds volumes ({}): not taking it over",
                            held.join(", ")
                        ),
                    ));
                }
            }
        }
        p.set_autostart(want.autostart).map_err(fail)?;
        self.edit_ledger(&want.name, |l| l.pool = Some(mark(owner, spec)))?;
        Ok(Done {
            id,
            summary: format!("pool {} taken over and marked", want.name),
            needs_reboot: false,
        })
    }
}
