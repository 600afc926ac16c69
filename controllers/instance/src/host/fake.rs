//! A host that keeps everything in memory and records what it was asked: layers and resources
//! exist when a test adds them, figures are what a test sets, and `prepare` remembers what a
//! task would have run on. It passes the same [`super::conformance`] suite as the real one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use aos_containerd::RootfsMount;

use super::{InstanceHost, LayerFacts, Paths, Preparation, Sample};
use crate::resources::Granted;
use crate::rootfs::TopLayer;
use crate::InstanceError;
use aos_api::itemconfig::RequestedResource;

/// What `prepare` was last given for an instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// Owner of the data.
    pub uid: u32,
    /// Group of the data.
    pub gid: u32,
    /// Bytes of the volume.
    pub volume: Option<u64>,
    /// Diff ids of the layers, lowest first.
    pub layers: Vec<String>,
    /// The host's `/` is the base.
    pub host_base: bool,
    /// The top layer's hostname.
    pub hostname: String,
    /// The top layer's extra `/etc/hosts` lines.
    pub hosts: Vec<String>,
    /// The top layer's `resolv.conf`.
    pub resolv_conf: String,
}

#[derive(Default)]
struct State {
    layers: HashMap<String, LayerFacts>,
    resources: HashMap<String, Granted>,
    prepared: HashMap<String, Prepared>,
    samples: HashMap<String, Sample>,
    oom_kills: HashMap<String, u64>,
    fail_prepare: Option<String>,
    resolv_conf: String,
    calls: Vec<String>,
}

/// See the module documentation.
#[derive(Default)]
pub struct FakeHost {
    state: Mutex<State>,
}

impl FakeHost {
    /// A host without layers or resources.
    pub fn new() -> Self {
        FakeHost::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a layer exist, with no files of its own; returns its facts.
    pub fn add_layer(&self, diff_id: &str) -> LayerFacts {
        let facts = LayerFacts {
            root: PathBuf::from("/fake/layers").join(diff_id.replace(':', "-")),
            implicit_dirs: Vec::new(),
            index: Default::default(),
        };
        self.lock().layers.insert(diff_id.into(), facts.clone());
        facts
    }

    /// Makes a layer gone.
    pub fn remove_layer(&self, diff_id: &str) {
        self.lock().layers.remove(diff_id);
    }

    /// Declares a node resource and what it grants.
    pub fn add_resource(&self, name: &str, granted: Granted) {
        self.lock().resources.insert(name.into(), granted);
    }

    /// The node's own `resolv.conf`.
    pub fn set_resolv_conf(&self, text: &str) {
        self.lock().resolv_conf = text.into();
    }

    /// What `sample` says of `name` from now on.
    pub fn set_sample(&self, name: &str, s: Sample) {
        self.lock().samples.insert(name.into(), s);
    }

    /// What `oom_kills` says of `name` from now on.
    pub fn set_oom_kills(&self, name: &str, n: u64) {
        self.lock().oom_kills.insert(name.into(), n);
    }

    /// Makes every `prepare` fail with `why` (`None`: succeed again).
    pub fn fail_prepare(&self, why: Option<&str>) {
        self.lock().fail_prepare = why.map(str::to_string);
    }

    /// What the last `prepare` of `name` was given, until `remove`.
    pub fn prepared(&self, name: &str) -> Option<Prepared> {
        self.lock().prepared.get(name).cloned()
    }

    /// Every call that changed something, as `verb name`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

fn top_summary(top: &TopLayer) -> (String, Vec<String>, String) {
    (
        top.hostname.clone(),
        top.hosts.clone(),
        top.resolv_conf.clone(),
    )
}

impl InstanceHost for FakeHost {
    fn layer(&self, diff_id: &str) -> Option<LayerFacts> {
        self.lock().layers.get(diff_id).cloned()
    }

    fn grant(&self, wanted: &[RequestedResource]) -> Result<Granted, InstanceError> {
        let st = self.lock();
        let mut g = Granted::default();
        for w in wanted {
            let r = st
                .resources
                .get(&w.name)
                .ok_or_else(|| InstanceError::ResourceMissing(w.name.clone()))?;
            g.env.extend(r.env.iter().cloned());
            g.devices.extend(r.devices.iter().cloned());
            g.binds.extend(r.binds.iter().cloned());
            g.mount_dirs.extend(r.mount_dirs.iter().cloned());
            g.mount_files.extend(r.mount_files.iter().cloned());
            g.groups.extend(r.groups.iter().copied());
            g.hosts.extend(r.hosts.iter().cloned());
        }
        g.groups.sort_unstable();
        g.groups.dedup();
        Ok(g)
    }

    fn resolv_conf(&self) -> String {
        self.lock().resolv_conf.clone()
    }

    fn paths(&self, name: &str) -> Paths {
        let dir = PathBuf::from("/fake/instances").join(name);
        Paths {
            state_file: dir.join("volume/state.dat"),
            storage_dir: dir.join("volume/storage"),
            log_dir: dir.join("logs"),
            cgroups_path: format!("/fake/{name}"),
        }
    }

    fn prepare(&self, p: &Preparation<'_>) -> Result<RootfsMount, InstanceError> {
        let mut st = self.lock();
        if let Some(d) = p.layers.iter().find(|(d, _)| !st.layers.contains_key(d)) {
            return Err(InstanceError::LayerMissing(d.0.clone()));
        }
        if let Some(why) = &st.fail_prepare {
            return Err(InstanceError::Rootfs(why.clone()));
        }
        let (hostname, hosts, resolv_conf) = top_summary(p.top);
        st.prepared.insert(
            p.name.into(),
            Prepared {
                uid: p.uid,
                gid: p.gid,
                volume: p.volume,
                layers: p.layers.iter().map(|(d, _)| d.clone()).collect(),
                host_base: p.host_base,
                hostname,
                hosts,
                resolv_conf,
            },
        );
        st.calls.push(format!("prepare {}", p.name));
        let mut lower = vec![format!("/fake/run/{}/top", p.name)];
        lower.extend(
            p.layers
                .iter()
                .rev()
                .map(|(_, l)| l.root.display().to_string()),
        );
        if p.host_base {
            lower.push("/".into());
        }
        Ok(RootfsMount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options: vec![format!("lowerdir={}", lower.join(":"))],
        })
    }

    fn sample(&self, name: &str) -> Sample {
        self.lock().samples.get(name).copied().unwrap_or_default()
    }

    fn oom_kills(&self, name: &str) -> u64 {
        self.lock().oom_kills.get(name).copied().unwrap_or(0)
    }

    fn clear_run(&self, name: &str) -> Result<(), InstanceError> {
        self.lock().calls.push(format!("clear_run {name}"));
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), InstanceError> {
        let mut st = self.lock();
        st.prepared.remove(name);
        st.samples.remove(name);
        st.oom_kills.remove(name);
        st.calls.push(format!("remove {name}"));
        Ok(())
    }
}
