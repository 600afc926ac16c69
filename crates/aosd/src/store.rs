//! The store aosd runs on, chosen by `[store] backend`: the embedded redb file in the data dir
//! (one node), or an etcd cluster shared by the nodes of a unit. Owns the `[store]` config and
//! the checks made when the store is opened.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use aos_api::Selector;
use aos_store::{Backend, Embedded, EmbeddedOptions, StoreError};
use aos_store_etcd::{Etcd, EtcdOptions, EtcdTls};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::instances;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Embedded,
    Etcd,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub backend: BackendKind,
    /// Watch events (embedded) or revisions (etcd: aosd compacts to keep them) kept for clients
    /// that resume from an older revision.
    pub event_log_limit: u64,
    /// Page cache of the store file, in MiB (embedded).
    pub cache_mib: usize,
    /// Most bytes the event log holds, in MiB (embedded).
    pub event_log_mib: u64,
    /// Space kept beside the store and given back to it when the disk is full, in MiB (embedded).
    pub reserve_mib: u64,
    pub etcd: EtcdSection,
}

/// Where the unit's etcd cluster is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdSection {
    /// Client URLs of the members; `https://` ones need `ca`.
    pub endpoints: Vec<String>,
    /// Every key aosd writes starts with it; the nodes of one unit share it.
    pub prefix: String,
    /// PEM files: the CA of the members' certificates, and this node's client certificate/key.
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            backend: BackendKind::Embedded,
            event_log_limit: 10_000,
            cache_mib: 8,
            event_log_mib: 64,
            reserve_mib: 8,
            etcd: EtcdSection::default(),
        }
    }
}

impl Default for EtcdSection {
    fn default() -> Self {
        EtcdSection {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/aos/".into(),
            ca: None,
            cert: None,
            key: None,
        }
    }
}

/// What a new store finds beside it in the data dir: instance data and layer images of an
/// earlier store. Starting on them would sweep running containers and every layer away.
fn earlier_state(c: &Config) -> Vec<String> {
    let nonempty = |p: PathBuf| {
        std::fs::read_dir(&p)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
            .then(|| p.display().to_string())
    };
    [
        nonempty(instances::instances_dir(c)),
        nonempty(c.data_dir.join("images/layers/sha256")),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn refuse_new_store(c: &Config, what: &str) -> anyhow::Result<()> {
    let found = earlier_state(c);
    if !found.is_empty() {
        bail!(
            "the store {what} is new (missing or empty), but the data dir holds what an earlier store knew: {}. \
             Refusing to start, so that none of it is swept away as unknown: restore the store, \
             or remove those directories to start this node afresh",
            found.join(", ")
        );
    }
    Ok(())
}

/// Opens the configured store.
pub async fn open(c: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    match c.store.backend {
        BackendKind::Embedded => open_embedded(c),
        BackendKind::Etcd => open_etcd(c).await,
    }
}

fn open_embedded(c: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    let path = c.data_dir.join("store.redb");
    let store = Embedded::open(EmbeddedOptions {
        path: Some(path.clone()),
        event_log_limit: c.store.event_log_limit,
        event_log_bytes: c.store.event_log_mib << 20,
        cache_size: c.store.cache_mib << 20,
        reserve_bytes: c.store.reserve_mib << 20,
        ..EmbeddedOptions::default()
    })
    .with_context(|| format!("failed to open the store {}", path.display()))?;
    let report = store.report();
    if report.created {
        refuse_new_store(c, &path.display().to_string())?;
    }
    if !report.quarantined.is_empty() {
        tracing::error!(
            damaged = report.quarantined.len(),
            keys = ?report.quarantined.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            "the store holds damaged records (quarantined): sweeps of unknown containers and files are off until they are dealt with"
        );
    }
    Ok(Arc::new(store))
}

async fn open_etcd(c: &Config) -> anyhow::Result<Arc<dyn Backend>> {
    let e = &c.store.etcd;
    let tls = match (&e.ca, &e.cert, &e.key) {
        (None, None, None) => None,
        (Some(ca), cert, key) => Some(EtcdTls {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, _, _) => bail!("store.etcd: a client certificate needs `ca` too"),
    };
    let opts = EtcdOptions {
        endpoints: e.endpoints.clone(),
        prefix: e.prefix.clone(),
        tls,
        event_log_limit: c.store.event_log_limit,
        ..EtcdOptions::default()
    };
    // An unreachable store is waited for, not a reason to exit: after a restart of aosd alone
    // the instances still run, and a node that booted cut off comes up when the network does.
    let mut delay = Duration::from_secs(1);
    let store = loop {
        match Etcd::connect(opts.clone()).await {
            Ok(store) => break store,
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(
                    endpoints = ?e.endpoints,
                    error = %why,
                    retry_in_s = delay.as_secs(),
                    "the etcd store is unreachable: waiting for it (running instances are left alone)"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(err) => {
                return Err(err).with_context(|| {
                    format!(
                        "failed to open the etcd store at {}",
                        e.endpoints.join(", ")
                    )
                })
            }
        }
    };
    tracing::info!(endpoints = ?e.endpoints, prefix = %e.prefix, "store: etcd");
    // Every aosd keeps its Node object there: a prefix without one is a new store.
    let nodes = store.list("Node", &Selector::everything()).await?;
    if nodes.items.is_empty() {
        refuse_new_store(c, &format!("etcd {}", e.prefix))?;
    }
    Ok(Arc::new(store))
}
