//! The daemon's configuration: versioned TOML (`/etc/aosd/aosd.toml`), overridden by command-line
//! flags, validated once into a typed struct. Every default is written out in
//! `deploy/aosd.toml`, and a test keeps the two equal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use aos_api::AosDuration;
use serde::{Deserialize, Serialize};

pub use crate::store::StoreSection;

mod boot;
mod cloud;
mod rootfs;
mod telemetry;

pub use boot::BootSection;
pub use cloud::CloudSection;
pub use rootfs::RootfsSection;
pub use telemetry::{EventsSection, MetricsSection};

/// The config file format this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// `runtimes.container.shim` for aosd's own shim, `containerd-shim-aos-v1` beside aosd.
pub const AOS_SHIM: &str = "aos";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version of this file.
    pub version: u32,
    /// Where aosd keeps its state (store, images, instance data).
    pub data_dir: PathBuf,
    pub node: NodeSection,
    pub api: ApiSection,
    pub log: LogSection,
    pub store: StoreSection,
    pub controllers: ControllersSection,
    pub events: EventsSection,
    pub metrics: MetricsSection,
    pub cloud: CloudSection,
    pub runtimes: RuntimesSection,
    pub images: ImagesSection,
    pub network: NetworkSection,
}

/// Instance networking: subnet pools and where network namespaces are mounted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    pub enabled: bool,
    pub pools: Vec<String>,
    pub netns_dir: PathBuf,
    pub uplink: String,
    /// Host ports instances may publish, `first-last`.
    pub host_ports: String,
    /// In a unit, each node's part of a network's subnet is the subnet's prefix plus this many
    /// bits (4: a /16 gives sixteen nodes a /20, 4094 addresses, each).
    pub node_slice_bits: u8,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            enabled: true,
            pools: (17..=31).map(|b| format!("172.{b}.0.0/16")).collect(),
            netns_dir: PathBuf::from("/run/netns"),
            uplink: String::new(),
            host_ports: "1024-65535".into(),
            node_slice_bits: 4,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesSection {
    /// Registry hosts (`host:port`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Extra CA certificates (PEM files) trusted for HTTPS.
    pub ca_files: Vec<PathBuf>,
    pub connect_timeout: AosDuration,
    pub read_timeout: AosDuration,
    pub download_attempts: u32,
    pub retry_wait: AosDuration,
    pub retry_max_wait: AosDuration,
    pub removed_ttl: AosDuration,
    pub versions_per_item: usize,
    pub integrity_interval: AosDuration,
    pub gc_interval: AosDuration,
    pub keep_free_mib: u64,
    pub allow_devices: bool,
    pub tar2sqfs: PathBuf,
    pub compressor: String,
    pub compressor_options: String,
    /// Convert a layer while it downloads (else after the download, from the verified blob).
    pub convert_while_downloading: bool,
    /// Credentials per registry host.
    pub credentials: BTreeMap<String, aos_image::source::Credentials>,
    /// Directories under which writers other than root may name `source.archive` paths.
    pub archive_dirs: Vec<PathBuf>,
}

impl Default for ImagesSection {
    fn default() -> Self {
        ImagesSection {
            insecure_registries: Vec::new(),
            ca_files: Vec::new(),
            connect_timeout: AosDuration::from_secs(10),
            read_timeout: AosDuration::from_secs(60),
            download_attempts: 3,
            retry_wait: AosDuration::from_secs(1),
            retry_max_wait: AosDuration::from_secs(5),
            removed_ttl: AosDuration::from_secs(30 * 86400),
            versions_per_item: 2,
            integrity_interval: AosDuration::from_secs(86400),
            gc_interval: AosDuration::from_secs(86400),
            keep_free_mib: 64,
            allow_devices: false,
            tar2sqfs: PathBuf::from("tar2sqfs"),
            compressor: "lz4".into(),
            compressor_options: String::new(),
            convert_while_downloading: true,
            credentials: BTreeMap::new(),
            archive_dirs: Vec::new(),
        }
    }
}

/// Who runs an Instance without `spec.nodeName`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// This node (a node on its own).
    #[default]
    Local,
    /// The node the unit's placement controller chooses (one node of the unit runs it at a
    /// time, elected through a lease in the store).
    Unit,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Node id; empty: `/etc/machine-id`, else the host name.
    pub id: String,
    /// DMIPS of the whole node; 0: estimated at start.
    pub dmips: u64,
    pub labels: BTreeMap<String, String>,
    /// How often usage (CPU, RAM, disk) is refreshed; each write is the node's heartbeat.
    pub usage_interval: AosDuration,
    /// Another node of the unit silent for this long is marked `Ready=Unknown`.
    pub lost_after: AosDuration,
    /// A node whose Node has been gone (deleted, not merely silent) this long has left the
    /// unit: the placement leader frees what it held in the store.
    pub departed_after: AosDuration,
    /// Who runs an Instance without `spec.nodeName`.
    pub placement: Placement,
    /// Partitions whose usage is reported, by name; `data` (the data dir) is always reported.
    pub partitions: BTreeMap<String, PathBuf>,
    /// The IPv4 address the other nodes of a unit reach this one at (their routes to its part
    /// of each network go through it); empty: the source address of the default route.
    pub address: Option<std::net::Ipv4Addr>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub socket: PathBuf,
    /// Permission bits of the socket, in octal.
    pub socket_mode: String,
    /// Group whose members may write (besides root); empty: root only.
    pub group: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing filter (`info`, `aosd=debug,info`); `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControllersSection {
    /// Reconciles of different objects of one kind running at once.
    pub concurrency: usize,
    /// Every object is reconciled at least this often.
    pub resync: AosDuration,
    /// First retry delay after a failed reconcile; doubles per failure.
    pub backoff_base: AosDuration,
    pub backoff_max: AosDuration,
    /// How long shutdown waits for running reconciles.
    pub shutdown_grace: AosDuration,
}

/// The container runtime: containerd, the rootfs, limits, restarts and logs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerSection {
    pub enabled: bool,
    pub max_instances: u64,
    pub containerd_socket: PathBuf,
    pub namespace: String,
    pub runtime_binary: String,
    pub runtime_root: String,
    pub cgroup_parent: String,
    pub host_binds: Vec<String>,
    pub run_dir_mib: u64,
    pub resources_file: PathBuf,
    pub uid_base: u32,
    pub uid_count: u32,
    pub logger: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: usize,
    pub stop_grace: AosDuration,
    pub restart_interval: AosDuration,
    pub start_burst: u32,
    pub start_interval: AosDuration,
    pub tmp_size_mib: u64,
    pub usage_interval: AosDuration,
    /// A reading goes to status only when it moved further than this from it: CPU in points
    /// of a core's percent, byte counts in percent of the written value (and 64 KiB).
    pub usage_step: f64,
    /// A status older than this is written anew even when nothing moved.
    pub usage_refresh: AosDuration,
    /// Size of an instance's volume (state and storage) in MiB when its item sets no limits;
    /// 0: unbounded plain directories.
    pub volume_mib: u64,
    /// Items may ask for the host's network (`networkMode: host`).
    pub allow_host_network: bool,
    /// Items may ask to run without the system-call filter (`seccomp: unconfined`).
    pub allow_unconfined: bool,
    /// Instances started or stopped at once (their reconciles mostly wait on containerd and
    /// the kernel, so more than `controllers.concurrency`).
    pub concurrency: usize,
    /// Tasks that share one runc v2 shim (1: a shim each, containerd's default). A shim's crash
    /// ends the tasks of its group, which restart as after any exit.
    pub shim_group: usize,
    /// The containerd runtime (shim) that runs the tasks: `aos` is aosd's own shim
    /// (`containerd-shim-aos-v1` beside aosd, run by path; it writes the logs itself, no
    /// aos-logger per task); `io.containerd.runc.v2` is the Go shim containerd ships (with an
    /// aos-logger per task); an absolute path runs that shim binary; another name runs
    /// `containerd-shim-<name's last parts>` from containerd's PATH, which must accept
    /// `binary://` log URIs (aos-logger).
    pub shim: String,
}

impl Default for ContainerSection {
    fn default() -> Self {
        ContainerSection {
            enabled: true,
            max_instances: 0,
            containerd_socket: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "aos".into(),
            runtime_binary: String::new(),
            runtime_root: String::new(),
            cgroup_parent: String::new(),
            host_binds: ["bin", "sbin", "lib", "lib64", "usr"]
                .map(String::from)
                .to_vec(),
            run_dir_mib: 16,
            resources_file: PathBuf::from("/etc/aosd/resources.json"),
            uid_base: 5000,
            uid_count: 60000,
            logger: PathBuf::new(),
            log_max_size: 1 << 20,
            log_max_files: 3,
            stop_grace: AosDuration::from_secs(10),
            restart_interval: AosDuration::from_secs(1),
            start_burst: 3,
            start_interval: AosDuration::from_secs(5),
            tmp_size_mib: 64,
            usage_interval: AosDuration::from_secs(30),
            usage_step: 2.0,
            usage_refresh: AosDuration::from_secs(300),
            volume_mib: 256,
            allow_host_network: false,
            allow_unconfined: false,
            concurrency: 16,
            shim_group: 16,
            shim: AOS_SHIM.into(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimesSection {
    pub container: ContainerSection,
    pub boot: BootSection,
    pub rootfs: RootfsSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            data_dir: PathBuf::from("/var/lib/aosd"),
            node: NodeSection::default(),
            api: ApiSection::default(),
            log: LogSection::default(),
            store: StoreSection::default(),
            controllers: ControllersSection::default(),
            events: EventsSection::default(),
            metrics: MetricsSection::default(),
            cloud: CloudSection::default(),
            runtimes: RuntimesSection::default(),
            images: ImagesSection::default(),
            network: NetworkSection::default(),
        }
    }
}

impl NodeSection {
    /// Whether this node is one of a unit (placement by the unit's leader).
    pub fn in_unit(&self) -> bool {
        self.placement == Placement::Unit
    }
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: String::new(),
            dmips: 0,
            labels: BTreeMap::new(),
            usage_interval: AosDuration::from_secs(10),
            lost_after: AosDuration::from_secs(40),
            departed_after: AosDuration::from_secs(600),
            placement: Placement::Local,
            partitions: BTreeMap::new(),
            address: None,
        }
    }
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            socket: PathBuf::from(aos_rpc::DEFAULT_SOCKET),
            socket_mode: "0660".into(),
            group: "aosd".into(),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for ControllersSection {
    fn default() -> Self {
        ControllersSection {
            concurrency: 4,
            resync: AosDuration::from_secs(300),
            backoff_base: AosDuration::from_secs(1),
            backoff_max: AosDuration::from_secs(300),
            shutdown_grace: AosDuration::from_secs(10),
        }
    }
}

impl Config {
    /// Reads a config file; a missing file at the default path gives the defaults.
    pub fn load(path: &Path, required: bool) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read config {}", path.display()))
            }
        };
        Self::parse(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.version != CONFIG_VERSION {
            bail!(
                "version = {} is not supported; this aosd reads version {CONFIG_VERSION}",
                self.version
            );
        }
        self.socket_mode()?;
        if self.runtimes.container.shim.trim().is_empty() {
            bail!("runtimes.container.shim must name a containerd runtime (aos, io.containerd.runc.v2)");
        }
        if self.runtimes.container.shim_group == 0 {
            bail!("runtimes.container.shim_group must be at least 1 (1: a shim per task)");
        }
        if self.runtimes.container.concurrency == 0 {
            bail!("runtimes.container.concurrency must be at least 1");
        }
        if self.controllers.concurrency == 0 {
            bail!("controllers.concurrency must be at least 1");
        }
        self.events.check()?;
        self.metrics.check()?;
        self.cloud.check()?;
        if self.controllers.resync.0.is_zero() {
            bail!("controllers.resync must be positive");
        }
        if self.images.download_attempts == 0 {
            bail!("images.download_attempts must be at least 1");
        }
        if self.images.versions_per_item == 0 {
            bail!("images.versions_per_item must be at least 1");
        }
        let rc = &self.runtimes.container;
        if rc.usage_interval.0.is_zero() {
            bail!("runtimes.container.usage_interval must be positive");
        }
        if !(rc.usage_step.is_finite() && rc.usage_step >= 0.0) {
            bail!("runtimes.container.usage_step must be a number of at least 0");
        }
        if self.node.usage_interval.0.is_zero() {
            bail!("node.usage_interval must be positive");
        }
        if !(1..=16).contains(&self.network.node_slice_bits) {
            bail!("network.node_slice_bits must be between 1 and 16");
        }
        self.runtimes.boot.validate()?;
        self.runtimes.rootfs.validate()?;
        Ok(())
    }

    /// The socket mode bits.
    pub fn socket_mode(&self) -> anyhow::Result<u32> {
        u32::from_str_radix(self.api.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .with_context(|| {
                format!(
                    "api.socket_mode {:?} is not an octal mode like \"0660\"",
                    self.api.socket_mode
                )
            })
    }
}

#[cfg(test)]
mod tests;
