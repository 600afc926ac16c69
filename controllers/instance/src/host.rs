//! The node side of an instance, as a port: what the controller reads of the node (unpacked
//! layers, the resources it grants, `resolv.conf`, cgroup and disk figures) and what it makes
//! there (the instance's volume and directories, its rootfs), so that the reconcile runs
//! against [`fake::FakeHost`] in tests and [`real::RealHost`] on a node. Both pass
//! [`conformance`].

pub mod conformance;
pub mod fake;
pub mod real;

use std::path::PathBuf;

use aos_containerd::RootfsMount;
use aos_image::stack::StackLayer;
use aos_image::tarfilter::LayerIndex;

use crate::resources::Granted;
use crate::rootfs::TopLayer;
use crate::InstanceError;
use aos_api::itemconfig::RequestedResource;

/// A layer unpacked on this node.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerFacts {
    /// Where its files are seen once mounted.
    pub root: PathBuf,
    /// Directories its tar implies without entries of their own.
    pub implicit_dirs: Vec<String>,
    /// What the stack check needs of it.
    pub index: LayerIndex,
}

impl LayerFacts {
    /// The layer as an entry of a rootfs stack.
    pub fn stack_layer(&self) -> StackLayer {
        StackLayer {
            root: self.root.clone(),
            implicit_dirs: self.implicit_dirs.iter().cloned().collect(),
        }
    }
}

/// Where the files of one instance are, as its runtime spec names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// The instance's `state.dat`.
    pub state_file: PathBuf,
    /// The instance's `storage/`.
    pub storage_dir: PathBuf,
    /// Where its task's output is logged.
    pub log_dir: PathBuf,
    /// The cgroup of its task, as the runtime spec gives it.
    pub cgroups_path: String,
}

/// An instance's use of the node at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// CPU time of its cgroup since the task started.
    pub cpu_time_ns: u64,
    /// Memory in use by its cgroup.
    pub memory_bytes: u64,
    /// Bytes of its `state.dat`.
    pub state_bytes: u64,
    /// Bytes in its `storage/`.
    pub storage_bytes: u64,
}

/// What the node makes for one task of an instance.
#[derive(Clone, Debug)]
pub struct Preparation<'a> {
    /// The instance.
    pub name: &'a str,
    /// Owner of `state.dat` and `storage/`.
    pub uid: u32,
    /// Group of `state.dat` and `storage/`.
    pub gid: u32,
    /// Bytes of the volume that bounds state and storage; `None`: plain directories.
    pub volume: Option<u64>,
    /// Diff ids of the image layers and where they are seen, lowest first.
    pub layers: &'a [(String, StackLayer)],
    /// The host's `/` under the image (an item without an OS of its own).
    pub host_base: bool,
    /// The top layer: hostname, hosts, resolv.conf, mount points.
    pub top: &'a TopLayer,
}

/// What the Instance controller needs of the node besides containers and networks.
pub trait InstanceHost: Send + Sync {
    /// A layer unpacked on this node; `None` when it is not (or no longer) there.
    fn layer(&self, diff_id: &str) -> Option<LayerFacts>;
    /// What the node's resources give to an item that asks for `wanted`.
    fn grant(&self, wanted: &[RequestedResource]) -> Result<Granted, InstanceError>;
    /// The node's own `resolv.conf`, for instances without a network of their own.
    fn resolv_conf(&self) -> String;
    /// Where the files of `name` are.
    fn paths(&self, name: &str) -> Paths;
    /// Makes what a task of `p.name` runs on: its data (kept across tasks, bounded by
    /// `p.volume`), its log directory, its layers mounted, and its rootfs directories made from
    /// scratch. Returns the overlay the task's rootfs is.
    fn prepare(&self, p: &Preparation<'_>) -> Result<RootfsMount, InstanceError>;
    /// What `name` uses now (zeros for what cannot be read).
    fn sample(&self, name: &str) -> Sample;
    /// How often the kernel killed a process of `name` for memory since its task started.
    fn oom_kills(&self, name: &str) -> u64;
    /// Removes the rootfs directories of `name` (its data stays).
    fn clear_run(&self, name: &str) -> Result<(), InstanceError>;
    /// Removes everything of `name`: volume, data, logs, rootfs directories; then the cgroup
    /// parent if no instance is left in it. Fine if there is nothing.
    fn remove(&self, name: &str) -> Result<(), InstanceError>;
}
