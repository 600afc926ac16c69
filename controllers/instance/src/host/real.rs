//! The node itself as the host of instances: layers from the layer store (squashfs images,
//! mounted when a task needs them), instance directories under the data directory (state and
//! storage in a volume of their own), rootfs directories on aosd's tmpfs, figures from the
//! cgroup filesystem, resources from the node's resources file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aos_containerd::RootfsMount;
use aos_image::layerstore::LayerStore;

use super::{InstanceHost, LayerFacts, Paths, Preparation, Sample};
use crate::config::NodeResources;
use crate::resources::Granted;
use crate::{rootfs, volume, InstanceError};
use aos_api::itemconfig::RequestedResource;
use aos_cgroups::Cgroups;

/// Where instances live on this node.
pub struct RealHost {
    /// The layer store of the image pipeline.
    pub layers: LayerStore,
    /// A tmpfs of aosd's own for the small rootfs directories.
    pub run_dir: PathBuf,
    /// Per-instance state, storage and logs: `<dir>/<name>/`.
    pub data_dir: PathBuf,
    /// cgroups go under `/<cgroup_parent>/<name>`.
    pub cgroup_parent: String,
    /// The host's `/`, the base of items without an OS of their own.
    pub host_root: PathBuf,
    /// Top-level directories of the host kept in such a base.
    pub host_binds: Vec<String>,
    /// The node's `resolv.conf`.
    pub resolv_conf: PathBuf,
    /// What the node declares as resources.
    pub resources: NodeResources,
    /// The cgroup filesystem.
    pub cgroups: Cgroups,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> InstanceError {
    move |source| InstanceError::Io { what, source }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

fn remove_dir(dir: &Path) -> Result<(), InstanceError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("failed to remove {}", dir.display()))(e)),
    }
}

impl RealHost {
    fn instance_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    fn run_dirs(&self, name: &str) -> rootfs::RunDirs {
        rootfs::RunDirs {
            root: self.run_dir.join("instances").join(name),
        }
    }

    fn cgroups_path(&self, name: &str) -> String {
        format!("/{}/{}", self.cgroup_parent, name)
    }

    /// The files that outlive tasks: `state.dat` and `storage/` in the instance's volume
    /// (handed to its uid), and `logs/`.
    fn prepare_data(&self, p: &Preparation<'_>) -> Result<(), InstanceError> {
        let dir = self.instance_dir(p.name);
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(io(format!("failed to create {}", logs.display())))?;
        let data = volume::prepare(&dir, p.volume)?;
        let storage = data.join("storage");
        std::fs::create_dir_all(&storage)
            .map_err(io(format!("failed to create {}", storage.display())))?;
        let state = data.join("state.dat");
        if !state.exists() {
            std::fs::write(&state, b"")
                .map_err(io(format!("failed to create {}", state.display())))?;
        }
        for (path, mode) in [(state, 0o600), (storage, 0o700)] {
            std::os::unix::fs::chown(&path, Some(p.uid), Some(p.gid))
                .and_then(|()| std::fs::set_permissions(&path, PermissionsExt::from_mode(mode)))
                .map_err(io(format!(
                    "failed to hand {} to uid {}",
                    path.display(),
                    p.uid
                )))?;
        }
        Ok(())
    }
}

impl InstanceHost for RealHost {
    fn layer(&self, diff_id: &str) -> Option<LayerFacts> {
        let record = self.layers.record(diff_id)?;
        let root = self.layers.mount_path(diff_id).ok()?;
        Some(LayerFacts {
            root,
            implicit_dirs: record.implicit_dirs,
            index: record.index,
        })
    }

    fn grant(&self, wanted: &[RequestedResource]) -> Result<Granted, InstanceError> {
        crate::resources::grant(&self.resources, wanted)
    }

    fn resolv_conf(&self) -> String {
        std::fs::read_to_string(&self.resolv_conf).unwrap_or_default()
    }

    fn paths(&self, name: &str) -> Paths {
        let data = volume::data_dir(&self.instance_dir(name));
        Paths {
            state_file: data.join("state.dat"),
            storage_dir: data.join("storage"),
            log_dir: self.instance_dir(name).join("logs"),
            cgroups_path: self.cgroups_path(name),
        }
    }

    fn prepare(&self, p: &Preparation<'_>) -> Result<RootfsMount, InstanceError> {
        for (diff_id, _) in p.layers {
            if self.layers.record(diff_id).is_none() {
                return Err(InstanceError::LayerMissing(diff_id.clone()));
            }
        }
        self.prepare_data(p)?;
        for (diff_id, _) in p.layers {
            self.layers
                .mount(diff_id)
                .map_err(|source| InstanceError::Layers {
                    what: format!("failed to mount layer {diff_id}"),
                    source,
                })?;
        }
        let stack: Vec<_> = p.layers.iter().map(|(_, l)| l.clone()).collect();
        let base = p
            .host_base
            .then_some((self.host_root.as_path(), self.host_binds.as_slice()));
        rootfs::prepare(&self.run_dirs(p.name), &stack, base, p.top)
    }

    fn sample(&self, name: &str) -> Sample {
        let cg = self.cgroups_path(name);
        let paths = self.paths(name);
        Sample {
            cpu_time_ns: self.cgroups.cpu_time_ns(&cg).unwrap_or(0),
            memory_bytes: self.cgroups.memory_bytes(&cg).unwrap_or(0),
            state_bytes: dir_size(&paths.state_file),
            storage_bytes: dir_size(&paths.storage_dir),
        }
    }

    fn oom_kills(&self, name: &str) -> u64 {
        self.cgroups.oom_kills(&self.cgroups_path(name))
    }

    fn clear_run(&self, name: &str) -> Result<(), InstanceError> {
        remove_dir(&self.run_dirs(name).root)
    }

    fn remove(&self, name: &str) -> Result<(), InstanceError> {
        volume::release(&self.instance_dir(name))?;
        remove_dir(&self.run_dirs(name).root)?;
        remove_dir(&self.instance_dir(name))?;
        // The last instance leaves no empty parent behind (one in use stays).
        self.cgroups.remove_if_empty(&self.cgroup_parent);
        Ok(())
    }
}
