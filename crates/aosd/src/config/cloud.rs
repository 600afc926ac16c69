//! `[cloud]`: the connector to the fleet's cloud (off by default): where it is, the TLS
//! files, where item images come from, and the limits of what it may ask.

use std::path::PathBuf;

use anyhow::bail;
use aos_api::AosDuration;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CloudSection {
    pub enabled: bool,
    /// `wss://host:port/path`.
    pub url: String,
    /// PEM files: the CA of the cloud's certificate (empty: the host's roots), and the node's
    /// client certificate and key (empty: none).
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Where item images are: an item `id` of version `v` is `<registry>/<id>:<v>`.
    pub registry: String,
    /// Largest message read, in bytes.
    pub max_message: usize,
    /// Most instances a desired status may ask of this node.
    pub max_instances: u64,
    pub heartbeat: AosDuration,
    pub backoff_base: AosDuration,
    pub backoff_max: AosDuration,
    /// Alerts kept while the cloud is away (the oldest dropped first).
    pub buffer: usize,
    /// How often the usage, averaged since the last time, is sent (`monitoringData`).
    pub monitoring: AosDuration,
    /// The item ids of the component items the node's BootSlot (A/B pair and recovery entry)
    /// and RootfsSlot install (empty: none).
    pub boot_item: String,
    pub recovery_item: String,
    pub rootfs_item: String,
}

impl Default for CloudSection {
    fn default() -> Self {
        CloudSection {
            enabled: false,
            url: String::new(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            registry: String::new(),
            max_message: 4 << 20,
            max_instances: 1000,
            heartbeat: AosDuration::from_secs(30),
            backoff_base: AosDuration::from_secs(1),
            backoff_max: AosDuration::from_secs(60),
            buffer: 1000,
            monitoring: AosDuration::from_secs(60),
            boot_item: String::new(),
            recovery_item: String::new(),
            rootfs_item: String::new(),
        }
    }
}

impl CloudSection {
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if !self.url.starts_with("wss://") && !self.url.starts_with("ws://") {
            bail!("cloud.url: {:?} is not a ws:// or wss:// URL", self.url);
        }
        if self.registry.is_empty() {
            bail!("cloud.registry: where the cloud's item images are must be set");
        }
        if self.heartbeat.0.is_zero()
            || self.backoff_base.0.is_zero()
            || self.monitoring.0.is_zero()
            || self.max_message == 0
        {
            bail!("cloud.heartbeat, cloud.backoff_base and cloud.max_message must be positive");
        }
        Ok(())
    }

    /// The connector's settings for node `node_id` (its Node object `node_name`).
    pub fn connector(
        &self,
        node_id: &str,
        node_name: &str,
    ) -> aos_cloud::connector::ConnectorConfig {
        let file = |p: &PathBuf| (!p.as_os_str().is_empty()).then(|| p.clone());
        aos_cloud::connector::ConnectorConfig {
            url: self.url.clone(),
            tls: aos_cloud::tls::TlsFiles {
                ca: file(&self.ca_file),
                cert: file(&self.cert_file),
                key: file(&self.key_file),
            },
            node_id: node_id.to_string(),
            node_name: node_name.to_string(),
            mapping: aos_cloud::desired::Mapping {
                registry: self.registry.clone(),
                max_instances: self.max_instances,
                slots: aos_cloud::desired::SlotTargets {
                    name: node_name.to_string(),
                    boot: Some(self.boot_item.clone()).filter(|s| !s.is_empty()),
                    recovery: Some(self.recovery_item.clone()).filter(|s| !s.is_empty()),
                    rootfs: Some(self.rootfs_item.clone()).filter(|s| !s.is_empty()),
                },
            },
            max_message: self.max_message,
            heartbeat: self.heartbeat.0,
            backoff_base: self.backoff_base.0,
            backoff_max: self.backoff_max.0,
            buffer: self.buffer,
            monitoring: self.monitoring.0,
        }
    }
}
