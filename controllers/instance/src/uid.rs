//! The pool of user and group ids instances run as: each Instance gets its own uid (and a gid
//! of the same number), recorded in its status so that it survives restarts, and released when
//! the Instance is deleted.

use std::collections::BTreeSet;
use std::sync::Mutex;

use aos_api::InstanceSpec;
use aos_store::Api;

use crate::InstanceError;

/// The uids instances run as (see the module documentation).
pub struct UidPool {
    base: u32,
    count: u32,
    /// `None` until seeded from the store.
    used: Mutex<Option<BTreeSet<u32>>>,
}

impl UidPool {
    /// `count` uids from `base`.
    pub fn new(base: u32, count: u32) -> UidPool {
        UidPool {
            base,
            count: count.max(1),
            used: Mutex::new(None),
        }
    }

    /// The lowest free uid; the store's Instances are read once to learn which are taken.
    pub async fn allocate(&self, api: &Api<InstanceSpec>) -> Result<u32, InstanceError> {
        let seeded = self
            .used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !seeded {
            let (items, _) = api.list(&Default::default()).await?;
            let taken: BTreeSet<u32> = items.iter().filter_map(|i| i.status.uid).collect();
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            if used.is_none() {
                *used = Some(taken);
            }
        }
        let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let used = guard.get_or_insert_with(BTreeSet::new);
        let uid = (self.base..self.base.saturating_add(self.count))
            .find(|u| !used.contains(u))
            .ok_or(InstanceError::NoUid(self.count))?;
        used.insert(uid);
        Ok(uid)
    }

    /// Marks a uid recorded in a status as taken (an Instance seen before the pool was seeded).
    pub fn claim(&self, uid: u32) {
        if let Some(used) = self.used.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            used.insert(uid);
        }
    }

    /// Gives a uid back (its Instance is gone).
    pub fn release(&self, uid: u32) {
        if let Some(used) = self.used.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            used.remove(&uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_api::Object;
    use aos_store::{Backend, Embedded, EmbeddedOptions};
    use std::sync::Arc;

    #[tokio::test]
    async fn uids_are_unique_skip_those_in_the_store_and_are_reused_after_release() {
        let backend: Arc<dyn Backend> =
            Arc::new(Embedded::open(EmbeddedOptions::default()).unwrap());
        let api = Api::<InstanceSpec>::new(backend);
        let obj = Object::new(
            "held",
            InstanceSpec {
                item_id: "i".into(),
                version: "1".into(),
                subject_id: "s".into(),
                ..Default::default()
            },
        );
        api.apply(&obj).await.unwrap();
        api.update_status("held", |s| s.uid = Some(100))
            .await
            .unwrap();
        let pool = UidPool::new(100, 3);
        assert_eq!(pool.allocate(&api).await.unwrap(), 101);
        assert_eq!(pool.allocate(&api).await.unwrap(), 102);
        assert!(matches!(
            pool.allocate(&api).await,
            Err(InstanceError::NoUid(3))
        ));
        pool.release(101);
        assert_eq!(pool.allocate(&api).await.unwrap(), 101);
    }
}
