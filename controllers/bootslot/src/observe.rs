//! Every read a reconcile of the BootSlot makes, into one snapshot: the latest BootSlot, the
//! EFI boot variables, the partition of each slot, the records, this boot's id and the time,
//! the versions found on the slots (before the first record), and for each wanted component
//! its blob once its Item is Ready.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aos_api::{BootSlotSpec, ItemPhase, ItemRef, ItemSpec, LayerSpec, Object};
use aos_slots::device::{partition_of, SlotDevice};
use aos_slots::efi::{BootVars, HardDrive, LoadOption};
use aos_store::{Api, Backend};
use chrono::{DateTime, Utc};

use crate::records::{Pending, State};
use crate::{BootEnv, BootError, BOOT_MEDIA_TYPE};

/// The EFI boot variables.
#[derive(Clone, Debug, Default)]
pub struct Efi {
    /// `BootCurrent`.
    pub current: Option<u16>,
    /// `BootNext`.
    pub next: Option<u16>,
    /// `BootOrder`.
    pub order: Vec<u16>,
    /// Every `Boot####` that reads.
    pub entries: BTreeMap<u16, LoadOption>,
}

/// The blob of a wanted component, or why there is none yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blob {
    /// The verified blob on disk and its digest.
    Ready { path: PathBuf, digest: String },
    /// The Item is not Ready yet (or missing): the message says which.
    Waiting(String),
    /// The Item is not a boot component: nothing can be written.
    Invalid(String),
}

/// A component the BootSlot asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Its version.
    pub version: String,
    /// Its blob.
    pub blob: Blob,
}

/// What one reconcile saw.
#[derive(Debug)]
pub struct Observed {
    /// The BootSlot as the store has it now.
    pub obj: Arc<Object<BootSlotSpec>>,
    /// Now, on the machine's clock.
    pub now: DateTime<Utc>,
    /// This boot.
    pub boot_id: String,
    /// The boot variables.
    pub efi: Efi,
    /// The partition of each slot, or why it is unknown.
    pub disks: BTreeMap<String, Result<HardDrive, String>>,
    /// The slots' state record.
    pub state: Option<State>,
    /// The pending update record.
    pub pending: Option<Pending>,
    /// Versions read from the slots' filesystems (only before the first state record).
    pub found: BTreeMap<String, Option<String>>,
    /// The A/B component asked for.
    pub wanted: Option<Wanted>,
    /// The recovery component asked for.
    pub wanted_recovery: Option<Wanted>,
}

async fn blob(backend: &Arc<dyn Backend>, r: &ItemRef) -> Result<Blob, BootError> {
    let (items, _) = Api::<ItemSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    let Some(item) = items.into_iter().find(|i| {
        i.spec.item_id == r.item_id
            && i.spec.version == r.version
            && i.metadata.deletion_timestamp.is_none()
    }) else {
        return Ok(Blob::Waiting(format!(
            "no Item {} version {}",
            r.item_id, r.version
        )));
    };
    if item.status.phase != ItemPhase::Ready {
        return Ok(Blob::Waiting(format!(
            "waiting for Item {} version {} to be Ready",
            r.item_id, r.version
        )));
    }
    let [layer] = item.status.layers.as_slice() else {
        return Ok(Blob::Invalid(format!(
            "Item {} version {} has {} images, a boot component has one",
            r.item_id,
            r.version,
            item.status.layers.len()
        )));
    };
    let Some(l) = Api::<LayerSpec>::new(backend.clone())
        .get_opt(layer)
        .await?
    else {
        return Ok(Blob::Waiting(format!("waiting for Layer {layer}")));
    };
    if l.spec.media_type != BOOT_MEDIA_TYPE {
        return Ok(Blob::Invalid(format!(
            "{} is not a boot image (media type {})",
            r.item_id, l.spec.media_type
        )));
    }
    Ok(match l.status.path {
        Some(p) => Blob::Ready {
            path: p.into(),
            digest: l.spec.digest,
        },
        None => Blob::Waiting(format!("waiting for Layer {layer}")),
    })
}

fn efi(env: &BootEnv) -> Result<Efi, BootError> {
    let v = BootVars(env.efi.as_ref());
    let mut entries = BTreeMap::new();
    for n in v.entries()? {
        // An entry another tool wrote that does not read is left alone.
        if let Ok(Some(o)) = v.entry(n) {
            entries.insert(n, o);
        }
    }
    Ok(Efi {
        current: v.current()?,
        next: v.next()?,
        order: v.order()?,
        entries,
    })
}

/// Reads everything a reconcile decides on; `None` when the BootSlot is gone.
pub async fn observe(
    env: &BootEnv,
    backend: &Arc<dyn Backend>,
    obj: &Object<BootSlotSpec>,
) -> Result<Option<Observed>, BootError> {
    let api = Api::<BootSlotSpec>::new(backend.clone());
    let Some(obj) = api.get_opt(obj.name()).await? else {
        return Ok(None);
    };
    let state = env.records.state()?;
    let mut disks = BTreeMap::new();
    let mut found = BTreeMap::new();
    for s in env.settings.slots() {
        let disk = match &s.partition {
            Some(p) => Ok(p.clone()),
            None => partition_of(&s.device).map_err(|e| e.to_string()),
        };
        disks.insert(s.name.clone(), disk);
        if state.is_none() {
            let v = SlotDevice::new(&s.device).read_version(&env.settings.version_file)?;
            found.insert(s.name.clone(), v);
        }
    }
    let wanted = match &obj.spec.item {
        Some(r) => Some(Wanted {
            version: r.version.clone(),
            blob: blob(backend, r).await?,
        }),
        None => None,
    };
    let wanted_recovery = match &obj.spec.recovery {
        Some(r) => Some(Wanted {
            version: r.version.clone(),
            blob: blob(backend, r).await?,
        }),
        None => None,
    };
    Ok(Some(Observed {
        obj: Arc::new(obj),
        now: env.machine.now(),
        boot_id: env.machine.boot_id()?,
        efi: efi(env)?,
        disks,
        state,
        pending: env.records.pending()?,
        found,
        wanted,
        wanted_recovery,
    }))
}
