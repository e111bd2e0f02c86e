//! Volumes: blank, copied from an image, fetched, or a cloud-init seed; grown in place.

use super::*;

impl Inner {
    pub(super) fn update_volume(
        &self,
        want: &VolumeSpec,
        have: &VolumeSpec,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let replace_needed = |what: &str| {
            ProviderError::Unsupported(format!(
                "{id}: changing {what} needs the resource to be replaced"
            ))
        };
        if want.format != have.format
            || want.thin != have.thin
            || want.backing != have.backing
            || want.source != have.source
        {
            return Err(replace_needed("a volume's format, backing image or source"));
        }
        if let (Some(w), Some(h)) = (want.capacity_bytes, have.capacity_bytes) {
            if w < h {
                return Err(ProviderError::Unsupported(format!(
                    "{id}: shrinking a volume loses data; it must be replaced"
                )));
            }
            if w > h {
                self.resize(&want.pool, &want.name, w, want.thin)?;
            }
        }
        self.edit_ledger(&want.pool, |l| {
            l.volumes.insert(want.name.clone(), mark.clone());
        })?;
        Ok(format!("volume {} updated", want.name))
    }

    pub(super) fn delete_volume(
        &self,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<String, ProviderError> {
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let pool_name = id.pool.clone().unwrap_or_default();
        let p = self.pool(&pool_name)?;
        let mark = self.read_volume_mark(&p, &pool_name, &id.name)?;
        check_owner(id, mark.as_ref(), owner)?;
        let vol = self.volume(&pool_name, &id.name)?;
        vol.delete(0).map_err(fail)?;
        self.content.forget(&pool_name, &id.name);
        crashpoint::point("volume deleted, mark kept");
        self.edit_ledger(&pool_name, |l| {
            l.volumes.remove(&id.name);
        })?;
        Ok(format!("volume {} deleted from pool {pool_name}", id.name))
    }

    pub(super) fn create_volume(
        &self,
        vol: &VolumeSpec,
        mark: &OwnerMark,
    ) -> Result<String, ProviderError> {
        let id = ResourceId::volume(&vol.pool, &vol.name);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let pool = self.pool(&vol.pool)?;
        if pool.lookup_storage_vol_by_name(&vol.name).is_ok() {
            return Err(ProviderError::backend(&id, "already exists"));
        }
        // Content first: a failed download must leave nothing behind.
        let content = match &vol.source {
            VolumeSource::Blank => None,
            VolumeSource::Fetch { .. } if !self.fetch_images => None,
            VolumeSource::Fetch { url, sha256 } => Some(
                fetch::fetch(url, sha256.as_deref()).map_err(|e| ProviderError::backend(&id, e))?,
            ),
            VolumeSource::Generated { generator, .. } => Some(generator.bytes().map_err(|e| {
                ProviderError::backend(&id, format!("cannot make its content: {e}"))
            })?),
        };
        let backing = match &vol.backing {
            Some((bpool, bname)) => {
                let b = self.volume(bpool, bname)?;
                let info = xml::parse_volume(&b.xml_desc(0).map_err(fail)?)
                    .map_err(|e| ProviderError::backend(&id, e))?;
                Some(info)
            }
            None => None,
        };
        let (format, capacity) = match &content {
            Some(bytes) => {
                let format = if fetch::is_qcow2(bytes) {
                    VolumeFormat::Qcow2
                } else {
                    vol.format
                };
                (format, bytes.len() as u64)
            }
            None => {
                let from_backing = backing.as_ref().map_or(0, |b| b.capacity);
                (
                    vol.format,
                    vol.capacity_bytes.unwrap_or(from_backing).max(from_backing),
                )
            }
        };
        let vxml = xml::volume_xml(
            &vol.name,
            capacity.max(1),
            format,
            // The test driver's pools have a fixed size and its volumes hold no bytes: allocating
            // space there would only make large thick disks fail for nothing.
            vol.thin || self.test_driver,
            backing.as_ref().map(|b| (b.path.as_str(), b.format)),
        )
        .map_err(|e| ProviderError::backend(&id, e))?;
        // The mark goes first: if the process dies after the volume exists, the next run still
        // knows it as the plan's own. A mark without a volume is ignored. Until the content is
        // written, the mark says the volume is blank, so a run killed before that sees the
        // source differ and replaces the volume.
        let first = match (&content, &mark.spec) {
            (Some(_), Spec::Volume(spec)) => OwnerMark {
                spec: Spec::Volume(VolumeSpec {
                    source: VolumeSource::Blank,
                    ..spec.clone()
                }),
                ..mark.clone()
            },
            _ => mark.clone(),
        };
        self.edit_ledger(&vol.pool, |l| {
            l.volumes.insert(vol.name.clone(), first);
        })?;
        crashpoint::point("volume marked");
        let unmark = || {
            let _ = self.edit_ledger(&vol.pool, |l| {
                l.volumes.remove(&vol.name);
            });
        };
        let created = match StorageVol::create_xml(&pool, &vxml, 0) {
            Ok(v) => v,
            Err(e) => {
                unmark();
                return Err(fail(e));
            }
        };
        crashpoint::point("volume created");
        if let Some(bytes) = &content {
            if let Err(e) = self.content.write(&self.conn, &vol.pool, &created, bytes) {
                let _ = created.delete(0);
                unmark();
                return Err(ProviderError::backend(&id, format!("upload failed: {e}")));
            }
            crashpoint::point("volume filled");
            // Let libvirt read the image's own header (its virtual size).
            let _ = pool.refresh(0);
            if let Some(wanted) = vol.capacity_bytes {
                let size = fetch::qcow2_virtual_size(bytes).unwrap_or(bytes.len() as u64);
                if wanted > size {
                    self.resize(&vol.pool, &vol.name, wanted, vol.thin)?;
                }
            }
            self.edit_ledger(&vol.pool, |l| {
                l.volumes.insert(vol.name.clone(), mark.clone());
            })?;
        }
        Ok(match &vol.source {
            VolumeSource::Fetch { url, .. } if self.fetch_images => {
                format!("image {} imported from {url}", vol.name)
            }
            VolumeSource::Fetch { .. } => format!(
                "image {} recorded (the sandbox downloads nothing)",
                vol.name
            ),
            _ => format!("volume {} created in pool {}", vol.name, vol.pool),
        })
    }

    /// Grows a volume. libvirt's test driver cannot resize, but its volumes hold no bytes (the
    /// sandbox keeps them elsewhere), so there the volume is defined again with the new size.
    pub(super) fn resize(
        &self,
        pool: &str,
        name: &str,
        capacity: u64,
        thin: bool,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::volume(pool, name);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let vol = self.volume(pool, name)?;
        if !self.test_driver {
            // A thick volume stays thick: allocate the space it grows by.
            let flags = if thin {
                0
            } else {
                sys::VIR_STORAGE_VOL_RESIZE_ALLOCATE
            };
            return vol.resize(capacity, flags).map_err(fail);
        }
        let info = xml::parse_volume(&vol.xml_desc(0).map_err(fail)?)
            .map_err(|e| ProviderError::backend(&id, e))?;
        let p = self.pool(pool)?;
        let backing = info
            .backing_path
            .as_ref()
            .map(|path| (path.as_str(), self.format_of_path(&p, path)));
        let redefined = xml::volume_xml(name, capacity, info.format, thin, backing)
            .map_err(|e| ProviderError::backend(&id, e))?;
        vol.delete(0).map_err(fail)?;
        StorageVol::create_xml(&p, &redefined, 0).map_err(fail)?;
        Ok(())
    }

    pub(super) fn format_of_path(&self, pool: &StoragePool, path: &str) -> VolumeFormat {
        pool.list_all_volumes(0)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.xml_desc(0).ok())
            .filter_map(|x| xml::parse_volume(&x).ok())
            .find(|info| info.path == path)
            .map_or(VolumeFormat::Qcow2, |info| info.format)
    }
}
