//! Every read a reconcile of the RootfsSlot makes, into one snapshot: the latest RootfsSlot,
//! the action files, the records, the version the running root holds, this boot's id and the
//! time, and the wanted component's blob once its Item is Ready.

use std::sync::Arc;

use aos_api::{Object, RootfsSlotSpec};
use aos_slots::component;
use aos_store::{Api, Backend};
use chrono::{DateTime, Utc};

use crate::flags::{Flags, WorkDir};
use crate::records::{Pending, State};
use crate::{RootfsEnv, RootfsError, FULL_MEDIA_TYPE, INC_MEDIA_TYPE};

pub use aos_slots::component::Wanted;

/// What one reconcile saw.
#[derive(Debug)]
pub struct Observed {
    /// The RootfsSlot as the store has it now.
    pub obj: Arc<Object<RootfsSlotSpec>>,
    /// Now, on the machine's clock.
    pub now: DateTime<Utc>,
    /// This boot.
    pub boot_id: String,
    /// The action files.
    pub flags: Flags,
    /// The installed state.
    pub state: Option<State>,
    /// The pending update.
    pub pending: Option<Pending>,
    /// The version the running root holds.
    pub running: Option<String>,
    /// The component asked for.
    pub wanted: Option<Wanted>,
}

/// The first line of `file` in `root`.
pub fn version_in(root: &std::path::Path, file: &str) -> Option<String> {
    std::fs::read_to_string(root.join(file.trim_start_matches('/')))
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
        .filter(|v| !v.is_empty())
}

/// Reads everything a reconcile decides on; `None` when the RootfsSlot is gone.
pub async fn observe(
    env: &RootfsEnv,
    backend: &Arc<dyn Backend>,
    obj: &Object<RootfsSlotSpec>,
) -> Result<Option<Observed>, RootfsError> {
    let Some(obj) = Api::<RootfsSlotSpec>::new(backend.clone())
        .get_opt(obj.name())
        .await?
    else {
        return Ok(None);
    };
    let s = &env.settings;
    let wanted = match &obj.spec.item {
        Some(r) => Some(
            component::wanted(
                backend,
                r,
                &[FULL_MEDIA_TYPE, INC_MEDIA_TYPE],
                env.settings.unit_node.as_deref(),
            )
            .await?,
        ),
        None => None,
    };
    Ok(Some(Observed {
        obj: Arc::new(obj),
        now: env.machine.now(),
        boot_id: env.machine.boot_id()?,
        flags: WorkDir(s.work_dir.clone()).flags(),
        state: env.records.state()?,
        pending: env.records.pending()?,
        running: version_in(&s.root_dir, &s.version_file),
        wanted,
    }))
}
