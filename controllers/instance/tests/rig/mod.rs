//! A node made of fakes for the Instance reconciler: the in-memory store, `FakeContainers`,
//! `FakeNetworks` and `FakeHost`; reconciles run one pass at a time, so that each step can be
//! looked at. Nothing here needs root or containerd.
// Shared by several test binaries, each of which uses part of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_api::itemconfig::{ImageRun, RunConfig};
use aos_api::{
    InstanceSpec, InstanceStatus, ItemConfig, ItemPhase, ItemSpec, LayerPhase, LayerSpec,
    NetworkSpec, Object,
};
use aos_containerd::fake::FakeContainers;
use aos_instance_controller::host::fake::FakeHost;
use aos_instance_controller::probes::Probers;
use aos_instance_controller::{
    Defaults, InstanceEnv, InstanceError, InstanceReconciler, LogSettings, Permits, UidPool,
};
use aos_ports::networks::fake::FakeNetworks;
use aos_reconcile::{Action, Context, Reconciler};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};

/// The diff id of the one layer of an item's `version` (each version has its own).
pub fn diff(version: &str) -> String {
    format!("sha256:{:0>64}", version.replace('.', ""))
}

pub struct Rig {
    pub backend: Arc<dyn Backend>,
    pub api: Api<InstanceSpec>,
    pub containers: FakeContainers,
    pub networks: Arc<FakeNetworks>,
    pub host: Arc<FakeHost>,
    pub env: Arc<InstanceEnv>,
    reconciler: InstanceReconciler,
}

pub fn defaults() -> Defaults {
    Defaults {
        restart_interval: Duration::from_millis(20),
        ..Defaults::default()
    }
}

impl Rig {
    pub fn new() -> Rig {
        let backend: Arc<dyn Backend> =
            Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
        Rig::on(backend, FakeContainers::new(), Arc::new(FakeHost::new()))
    }

    /// A node (a restarted aosd) on this store, runtime and host.
    pub fn on(backend: Arc<dyn Backend>, containers: FakeContainers, host: Arc<FakeHost>) -> Rig {
        let networks = Arc::new(FakeNetworks::new());
        networks.add("net");
        let env = Arc::new(InstanceEnv {
            containers: Arc::new(containers.clone()),
            networks: Some(networks.clone()),
            host: host.clone(),
            logs: LogSettings {
                logger: "/fake/aos-logger".into(),
                max_size: 1 << 20,
                max_files: 2,
            },
            defaults: defaults(),
            permits: Permits::default(),
            uids: UidPool::new(5000, 10),
            probes: Probers::new(Arc::new(containers.clone())),
            oom: Mutex::new(Default::default()),
            stopping: Default::default(),
            usage: Default::default(),
            owner: Default::default(),
        });
        Rig {
            api: Api::new(backend.clone()),
            backend,
            containers,
            networks,
            host,
            reconciler: InstanceReconciler::new(env.clone()),
            env,
        }
    }

    /// Makes an Item of `version` whose layer is on the node; Ready when `ready`.
    pub async fn item(&self, version: &str, ready: bool, config: ItemConfig) {
        let name = format!("svc-{version}");
        let items = Api::<ItemSpec>::new(self.backend.clone());
        let spec = ItemSpec {
            item_id: "svc".into(),
            version: version.into(),
            source: aos_api::ItemSource {
                registry: Some(format!("registry.test/svc:{version}")),
                ..Default::default()
            },
            ..Default::default()
        };
        items.apply(&Object::new(name.clone(), spec)).await.unwrap();
        let layers = Api::<LayerSpec>::new(self.backend.clone());
        let (layer_name, diff) = (format!("layer-{version}"), diff(version));
        self.host.add_layer(&diff);
        let layer = LayerSpec {
            digest: diff.clone(),
            diff_id: Some(diff),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            ..Default::default()
        };
        layers
            .apply(&Object::new(layer_name.clone(), layer))
            .await
            .unwrap();
        layers
            .update_status(&layer_name, |s| s.phase = LayerPhase::Ready)
            .await
            .unwrap();
        items
            .update_status(&name, |s| {
                s.phase = if ready {
                    ItemPhase::Ready
                } else {
                    ItemPhase::Downloading
                };
                s.layers = vec![layer_name.clone()];
                s.config = Some(RunConfig {
                    image: ImageRun {
                        cmd: Some(vec!["trap".into(), "sleep".into()]),
                        ..Default::default()
                    },
                    item: Some(config.clone()),
                });
            })
            .await
            .unwrap();
    }

    /// A Network that is up.
    pub async fn network(&self) {
        let api = Api::<NetworkSpec>::new(self.backend.clone());
        api.apply(&Object::new("net".to_string(), NetworkSpec::default()))
            .await
            .unwrap();
        api.update_status("net", |s| {
            s.bridge = Some("br-net".into());
            s.gateway = Some("172.18.0.1".into());
        })
        .await
        .unwrap();
    }

    pub async fn instance(&self, spec: InstanceSpec) {
        self.api
            .apply(&Object::new("web".to_string(), spec))
            .await
            .unwrap();
    }

    pub async fn get(&self) -> Object<InstanceSpec> {
        self.api.get("web").await.unwrap()
    }

    pub async fn status(&self) -> InstanceStatus {
        self.get().await.status
    }

    fn ctx(&self) -> Context<InstanceSpec> {
        Context {
            api: self.api.clone(),
            reader: Default::default(),
            backend: self.backend.clone(),
            events: Default::default(),
            metrics: Default::default(),
        }
    }

    /// One reconcile pass.
    pub async fn pass(&self) -> Result<Action, InstanceError> {
        let obj = Arc::new(self.get().await);
        self.reconciler.apply(obj, &self.ctx()).await
    }

    /// Passes until one asks for nothing at once (ids given, leftovers cleared).
    pub async fn settle(&self) -> Result<Action, InstanceError> {
        for _ in 0..5 {
            match self.pass().await? {
                Action::Requeue(d) if d.is_zero() => continue,
                a => return Ok(a),
            }
        }
        panic!("no pass settled");
    }

    /// Runs the cleanup as the runtime does: again while it is not finished (the fake's tasks
    /// end at their signal, so the second pass finds nothing running).
    pub async fn delete(&self) -> Result<Action, InstanceError> {
        for _ in 0..10 {
            let obj = Arc::new(self.get().await);
            match self.reconciler.cleanup(obj, &self.ctx()).await? {
                Action::Requeue(_) => continue,
                a => return Ok(a),
            }
        }
        panic!("the cleanup did not finish in 10 passes");
    }

    /// What the runtime does for an Instance this node does not own, until it is done.
    pub async fn let_go(&self) -> Result<Action, InstanceError> {
        for _ in 0..10 {
            let obj = Arc::new(self.get().await);
            assert!(!self.reconciler.owns(&obj), "the rig's node owns it");
            match self.reconciler.disowned(obj, &self.ctx()).await? {
                Action::Requeue(_) => continue,
                a => return Ok(a),
            }
        }
        panic!("letting go did not finish in 10 passes");
    }

    /// How often the runtime was asked to run a task.
    pub fn runs(&self) -> usize {
        let calls = self.containers.calls();
        calls.iter().filter(|c| c.starts_with("run ")).count()
    }
}

pub fn spec(version: &str) -> InstanceSpec {
    InstanceSpec {
        item_id: "svc".into(),
        version: version.into(),
        subject_id: "subject".into(),
        ..Default::default()
    }
}

pub fn condition(s: &InstanceStatus, t: &str) -> (String, String, String) {
    let c = s
        .common
        .condition(t)
        .unwrap_or_else(|| panic!("no {t} condition"));
    (
        format!("{:?}", c.status),
        c.reason.clone(),
        c.message.clone(),
    )
}
