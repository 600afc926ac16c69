//! Wiring of the container runtime: containerd (reached in the background, so that the API
//! serves while containerd starts), the tmpfs for rootfs directories, the Instance controller,
//! its Item watch and task events, and the sweep of containers whose Instance is gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use aos_cgroups::Cgroups;
use aos_containerd::{Containerd, RuntimeOptions};
use aos_instance_controller::{
    host::real::RealHost, probes::Probers, rootfs, Defaults, InstanceEnv, LogSettings,
    NodeResources, UidPool,
};
use aos_reconcile::{Controller, ControllerConfig};
use aos_store::Backend;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Whether containerd answers, as the watcher of [`spawn`] last saw it.
#[derive(Clone)]
pub struct RuntimeState(Arc<Mutex<Result<(), String>>>);

impl Default for RuntimeState {
    fn default() -> Self {
        RuntimeState(Arc::new(Mutex::new(Err(
            "containerd was not reached yet".into()
        ))))
    }
}

impl RuntimeState {
    fn set(&self, v: Result<(), String>) {
        let mut cur = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *cur != v {
            match &v {
                Ok(()) => tracing::info!("containerd answers"),
                Err(why) => tracing::warn!(reason = %why, "containerd does not answer"),
            }
            *cur = v;
        }
    }

    /// The check the Node controller reports.
    pub fn check(&self) -> aos_node_controller::RuntimeCheck {
        let me = self.0.clone();
        Arc::new(move || me.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Asks containerd every few seconds whether it answers.
async fn watch_runtime(
    containers: Arc<dyn aos_containerd::Containers>,
    state: RuntimeState,
    stop: CancellationToken,
) {
    loop {
        state.set(
            containers
                .ping()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

/// Where instances keep state, storage and logs.
pub fn instances_dir(c: &Config) -> PathBuf {
    c.data_dir.join("instances")
}

/// A binary installed beside aosd.
fn beside_aosd(name: &str) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()
        .context("failed to find aosd's own path")?
        .with_file_name(name))
}

/// The runtime containerd is asked for: aosd's own shim by its path, a path as is (it must
/// exist), else a runtime name containerd resolves.
fn shim_runtime(c: &Config) -> anyhow::Result<String> {
    let shim = c.runtimes.container.shim.trim();
    let path = if shim == crate::config::AOS_SHIM {
        beside_aosd("containerd-shim-aos-v1")?
    } else if shim.starts_with('/') {
        PathBuf::from(shim)
    } else {
        return Ok(shim.to_string());
    };
    if !path.is_file() {
        bail!(
            "the shim {} is missing (install containerd-shim-aos-v1 beside aosd, or set runtimes.container.shim)",
            path.display()
        );
    }
    Ok(path.display().to_string())
}

/// The logging binary named in the tasks' log URIs. aosd's own shim writes the logs itself and
/// never runs it, so there it need not exist.
fn logger_path(c: &Config) -> anyhow::Result<PathBuf> {
    let configured = &c.runtimes.container.logger;
    let path = if configured.as_os_str().is_empty() {
        beside_aosd("aos-logger")?
    } else {
        configured.clone()
    };
    if c.runtimes.container.shim.trim() != crate::config::AOS_SHIM && !path.is_file() {
        bail!(
            "the logging binary {} is missing (install aos-logger beside aosd or set runtimes.container.logger)",
            path.display()
        );
    }
    Ok(path)
}

/// The Instance controller's environment, set once containerd answered and the controller
/// started; the API's `Top` reads fresh usage through it.
pub type InstancesHandle = Arc<std::sync::OnceLock<Arc<aos_instance_controller::InstanceEnv>>>;

/// Starts the container runtime's controller once containerd answers.
pub fn spawn(
    tasks: &mut JoinSet<()>,
    c: &Config,
    layers: aos_image::layerstore::LayerStore,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    stopper: Arc<crate::reboot::InstanceStopper>,
    runtime: RuntimeState,
) -> anyhow::Result<()> {
    let rc = c.runtimes.container.clone();
    if !rc.enabled {
        return Ok(());
    }
    let run_dir = c.data_dir.join("run");
    let logger = logger_path(c)?;
    let shim = shim_runtime(c)?;
    let resources = NodeResources::load(&rc.resources_file)?;
    let data_dir = instances_dir(c);
    let net_cfg = c.network.clone();
    let scope = c.data_dir.display().to_string();
    let stop = stopper.controllers.clone();
    let owner = aos_instance_controller::Owner {
        node: aos_node_controller::host::object_name(&aos_node_controller::host::node_id(Some(
            &c.node.id,
        ))),
        unit: c.node.in_unit(),
    };
    tasks.spawn(async move {
        let containerd = loop {
            match Containerd::connect(&rc.containerd_socket, &rc.namespace).await {
                Ok(cd) => break cd,
                Err(e) => {
                    runtime.set(Err(e.to_string()));
                    tracing::warn!(error = %e, "containerd is not reachable yet; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                    }
                }
            }
        };
        // Mounted once containerd answers: a node without containerd mounts nothing.
        if let Err(e) = rootfs::ensure_tmpfs(&run_dir, rc.run_dir_mib) {
            tracing::error!(error = %e, dir = %run_dir.display(), "no container runtime: the rootfs tmpfs cannot be mounted");
            return;
        }
        // The network side: its own controller, and the port the Instance controller uses.
        let (networks, net_controller) = if net_cfg.enabled {
            let unit_node = owner.unit.then(|| owner.node.clone());
            match network_parts(&net_cfg, &scope, unit_node, backend.clone(), config.clone()) {
                Ok((a, c)) => (Some(a), Some(c)),
                Err(e) => {
                    tracing::error!(error = %e, "instance networking is off");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        let containers = Arc::new(
            containerd
                .with_runtime(RuntimeOptions {
                    binary: rc.runtime_binary.clone(),
                    root: rc.runtime_root.clone(),
                })
                .with_shim(&shim)
                .with_shim_group(rc.shim_group),
        );
        tokio::spawn(watch_runtime(containers.clone(), runtime, stop.clone()));
        let _ = stopper.containers.set(containers.clone());
        let host = RealHost {
            layers,
            run_dir,
            data_dir,
            cgroup_parent: Some(rc.cgroup_parent.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| rc.namespace.clone()),
            host_root: PathBuf::from("/"),
            host_binds: rc.host_binds.clone(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            resources,
            cgroups: Cgroups::host(),
        };
        let env = Arc::new(InstanceEnv {
            containers: containers.clone(),
            networks,
            host: Arc::new(host),
            logs: LogSettings {
                logger,
                max_size: rc.log_max_size,
                max_files: rc.log_max_files,
            },
            defaults: Defaults {
                restart_interval: rc.restart_interval.0,
                start_burst: rc.start_burst,
                start_interval: rc.start_interval.0,
                stop_grace: rc.stop_grace.0,
                tmp_size: rc.tmp_size_mib << 20,
                usage_interval: rc.usage_interval.0,
                usage_step: rc.usage_step,
                usage_refresh: rc.usage_refresh.0,
                volume_size: rc.volume_mib << 20,
            },
            permits: aos_instance_controller::Permits {
                host_network: rc.allow_host_network,
                unconfined: rc.allow_unconfined,
            },
            uids: UidPool::new(rc.uid_base, rc.uid_count),
            probes: Probers::new(containers),
            oom: Mutex::new(Default::default()),
            stopping: Default::default(),
            usage: Default::default(),
            owner,
        });
        let _ = stopper.env.set(env.clone());
        if let Some(net) = net_controller {
            tokio::spawn(net.run(stop.clone()));
        }
        let config = ControllerConfig {
            concurrency: rc.concurrency,
            ..config
        };
        aos_instance_controller::run(env, backend, config, stop).await;
    });
    Ok(())
}

type NetParts = (
    Arc<dyn aos_instance_controller::network::Networks>,
    Controller<aos_network_controller::NetworkReconciler>,
);

/// The Network controller and the attacher, sharing one netlink connection.
fn network_parts(
    c: &crate::config::NetworkSection,
    scope: &str,
    unit_node: Option<String>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> anyhow::Result<NetParts> {
    use aos_network_controller::{ipam::Cidr, netlink::Links, Attacher, Names, NetworkReconciler};
    let pool = c
        .pools
        .iter()
        .map(|p| Cidr::parse(p).with_context(|| format!("network.pools: {p:?} is not a.b.c.d/len")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names = Names::new(scope, c.netns_dir.clone());
    let links = Links::new()?;
    let host_ports = aos_network_controller::hostports::PortRange::parse(&c.host_ports)
        .with_context(|| format!("network.host_ports: {:?} is not first-last", c.host_ports))?;
    let mut attacher = Attacher::new(backend.clone(), names.clone(), links.clone(), host_ports);
    if let Some(node) = &unit_node {
        attacher = attacher.in_unit(node);
    }
    let attacher = Arc::new(attacher);
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns = aos_network_controller::dns::Dns::new(aos_network_controller::dns::Dns::upstream_of(
        &resolv,
    ));
    let mut reconciler = NetworkReconciler::new(
        names,
        links,
        pool,
        dns,
        Some(c.uplink.clone()).filter(|u| !u.is_empty()),
    );
    if let Some(node) = unit_node {
        reconciler = reconciler.in_unit(aos_network_controller::slices::Unit {
            node,
            bits: c.node_slice_bits,
        });
    }
    let controller = aos_network_controller::controller(reconciler, backend, config);
    Ok((attacher, controller))
}
