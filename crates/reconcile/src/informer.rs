//! The informer: lists a kind once, then follows its watch into a read cache, and tells the
//! controller which keys changed. Changes to status alone do not wake the object's own
//! controller (it wrote them), nor do finalizer changes; everything else does. A `Gone` or a
//! broken watch re-lists.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aos_api::{Object, Selector, Spec};
use aos_store::{Api, EventType};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A read view of the informer cache of one kind.
pub struct Reader<K: Spec> {
    cache: Arc<RwLock<HashMap<String, Arc<Object<K>>>>>,
    ready: watch::Sender<bool>,
}

impl<K: Spec> Clone for Reader<K> {
    fn clone(&self) -> Self {
        Reader {
            cache: self.cache.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K: Spec> Default for Reader<K> {
    fn default() -> Self {
        Reader {
            cache: Default::default(),
            ready: watch::channel(false).0,
        }
    }
}

impl<K: Spec> Reader<K> {
    /// The cached object `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Object<K>>> {
        self.cache.read().ok()?.get(name).cloned()
    }

    /// Every cached object, by name.
    pub fn list(&self) -> Vec<Arc<Object<K>>> {
        let mut v: Vec<_> = self
            .cache
            .read()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        v
    }

    /// The names of every cached object.
    pub fn keys(&self) -> Vec<String> {
        self.cache
            .read()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the first list has filled the cache.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list has filled the cache.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    fn replace_all(&self, items: Vec<Object<K>>) -> Vec<String> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<String> = cache.keys().cloned().collect();
        cache.clear();
        for o in items {
            keys.push(o.metadata.name.clone());
            cache.insert(o.metadata.name.clone(), Arc::new(o));
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Applies an event; returns whether the object's controller should look at it.
    fn apply(&self, type_: EventType, obj: Object<K>) -> bool {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let name = obj.metadata.name.clone();
        if type_ == EventType::Deleted {
            cache.remove(&name);
            return true;
        }
        let old = cache.insert(name, Arc::new(obj.clone()));
        match old {
            None => true,
            Some(old) => {
                let mut a = old.metadata.clone();
                let mut b = obj.metadata.clone();
                // Neither the revision nor finalizers (the runtime adds its own) are news.
                a.resource_version = 0;
                b.resource_version = 0;
                a.finalizers.clear();
                b.finalizers.clear();
                a != b || old.spec != obj.spec
            }
        }
    }
}

/// Lists a kind, then follows its watch from the listed revision; lists again after any watch
/// failure (`Gone`, a lost connection) and retries a failed list every second. Runs until
/// cancelled.
async fn follow<K: Spec>(
    api: Api<K>,
    shutdown: CancellationToken,
    mut on_list: impl FnMut(Vec<Object<K>>),
    mut on_event: impl FnMut(aos_store::TypedEvent<K>),
) {
    let everything = Selector::everything();
    loop {
        let listed = tokio::select! {
            _ = shutdown.cancelled() => return,
            l = api.list(&everything) => l,
        };
        let (items, rev) = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(kind = K::KIND, error = %e, "list failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        on_list(items);
        let mut stream = api.watch(Some(rev));
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = stream.next() => ev,
            };
            match ev {
                Some(Ok(ev)) => on_event(ev),
                Some(Err(e)) => {
                    tracing::info!(kind = K::KIND, error = %e, "watch ended; listing again");
                    break;
                }
                None => break,
            }
        }
    }
}

/// Fills the cache and tells the controller which keys changed.
pub(crate) async fn run<K: Spec>(
    api: Api<K>,
    reader: Reader<K>,
    keys: mpsc::UnboundedSender<String>,
    shutdown: CancellationToken,
) {
    let r = reader.clone();
    let k = keys.clone();
    follow(
        api,
        shutdown,
        move |items| {
            for key in r.replace_all(items) {
                let _ = k.send(key);
            }
            r.ready.send_replace(true);
        },
        move |ev| {
            let name = ev.object.metadata.name.clone();
            if reader.apply(ev.type_, ev.object) {
                let _ = keys.send(name);
            }
        },
    )
    .await
}

/// Maps a change of another kind to the keys it concerns.
pub(crate) type KeyMap<K2> = Arc<dyn Fn(&Object<K2>) -> Vec<String> + Send + Sync>;

/// Follows another kind and wakes the keys `map` names for each change of it (status too).
pub(crate) async fn run_mapped<K2: Spec>(
    api: Api<K2>,
    map: KeyMap<K2>,
    keys: mpsc::UnboundedSender<String>,
    shutdown: CancellationToken,
) {
    follow(
        api,
        shutdown,
        |_| {},
        move |ev| {
            for k in map(&ev.object) {
                let _ = keys.send(k);
            }
        },
    )
    .await
}
