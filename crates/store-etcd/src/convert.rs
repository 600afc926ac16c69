//! Objects to etcd keys and values and back: the key is `<prefix><Kind>/<name>`, the value the
//! object's JSON; `resourceVersion` comes from the key's mod revision, never from the value.

use aos_api::{DynObject, Revision};
use aos_store::{EventType, StoreError, WatchEvent};
use etcd_client::{Event, KeyValue};

pub(crate) fn key_of(prefix: &str, kind: &str, name: &str) -> String {
    format!("{prefix}{}", aos_store::plan::key(kind, name))
}

/// The value stored for `obj` (its resourceVersion is left out: etcd assigns it).
pub(crate) fn encode(obj: &DynObject) -> Result<Vec<u8>, StoreError> {
    let mut o = obj.clone();
    o.metadata.resource_version = 0;
    serde_json::to_vec(&o).map_err(|e| StoreError::Internal(e.to_string()))
}

/// The object stored in `kv`, at the key's mod revision.
pub(crate) fn decode(kv: &KeyValue) -> Result<DynObject, StoreError> {
    let mut o: DynObject = serde_json::from_slice(kv.value()).map_err(|e| {
        StoreError::Internal(format!(
            "etcd key {:?} does not hold an object: {e}",
            String::from_utf8_lossy(kv.key())
        ))
    })?;
    o.metadata.resource_version = kv.mod_revision() as Revision;
    Ok(o)
}

/// A watch event of the store from one of etcd's. A deletion carries the object as it was
/// (etcd's previous value) at the revision of the deletion, as the embedded backend does.
pub(crate) fn event(ev: &Event) -> Result<WatchEvent, StoreError> {
    let kv = ev
        .kv()
        .ok_or_else(|| StoreError::Internal("etcd watch event without a key".into()))?;
    let rev = kv.mod_revision();
    let (type_, mut object) = match ev.event_type() {
        etcd_client::EventType::Put => {
            let t = if kv.create_revision() == kv.mod_revision() {
                EventType::Added
            } else {
                EventType::Modified
            };
            (t, decode(kv)?)
        }
        etcd_client::EventType::Delete => {
            let prev = ev.prev_kv().ok_or_else(|| {
                StoreError::Internal(format!(
                    "etcd delete of {:?} without its previous value",
                    String::from_utf8_lossy(kv.key())
                ))
            })?;
            (EventType::Deleted, decode(prev)?)
        }
    };
    object.metadata.resource_version = rev as Revision;
    Ok(WatchEvent {
        type_,
        revision: rev as Revision,
        object,
    })
}
