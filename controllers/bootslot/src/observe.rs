//! Every read a reconcile of the BootSlot makes, into one snapshot: the latest BootSlot, the
//! EFI boot variables, the partition of each slot, the records, this boot's id and the time,
//! the versions found on the slots (before the first record), and for each wanted component
//! its blob once its Item is Ready.

use std::collections::BTreeMap;
use std::sync::Arc;

use aos_api::{BootSlotSpec, ItemRef, Object};
use aos_slots::component;
use aos_slots::device::partition_of;
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

pub use aos_slots::component::{Blob, Wanted};

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
            found.insert(
                s.name.clone(),
                (env.versions)(s, &env.settings.version_file),
            );
        }
    }
    let wanted_of = |r: &Option<ItemRef>| {
        let r = r.clone();
        async move {
            match r {
                Some(r) => Ok::<_, BootError>(Some(
                    component::wanted(
                        backend,
                        &r,
                        &[BOOT_MEDIA_TYPE],
                        env.settings.unit_node.as_deref(),
                    )
                    .await?,
                )),
                None => Ok(None),
            }
        }
    };
    let wanted = wanted_of(&obj.spec.item).await?;
    let wanted_recovery = wanted_of(&obj.spec.recovery).await?;
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
