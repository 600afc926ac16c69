//! aosd, the node agent: reads its config, opens the store, serves the local gRPC API on a Unix
//! socket and runs the controllers until SIGTERM or SIGINT.
// A binary: `--print-config` and start-up failures print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod auth;
mod authority;
mod boot;
mod config;
mod images;
mod instances;
mod metrics;
mod reboot;
mod reporting;
mod rootfs;
mod server;
mod store;
mod tls_roots;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aos_api::RuntimeType;
use aos_node_controller::{NodeConfig, NodeReconciler};
use aos_reconcile::{Backoff, Controller, ControllerConfig, ControllerMetrics, Recorder};
use aos_store::Api;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};

const DEFAULT_CONFIG: &str = "/etc/aosd/aosd.toml";

/// The aosd node agent.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML); a missing file at the default path means all defaults.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Data directory (overrides data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// API socket (overrides api.socket).
    #[arg(long, env = "AOSD_SOCKET")]
    socket: Option<PathBuf>,
    /// Socket permission bits, octal (overrides api.socket_mode).
    #[arg(long)]
    socket_mode: Option<String>,
    /// Group whose members may write (overrides api.group).
    #[arg(long)]
    group: Option<String>,
    /// Node id (overrides node.id).
    #[arg(long)]
    node_id: Option<String>,
    /// Log format (overrides log.format).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter (overrides log.level).
    #[arg(long)]
    log_level: Option<String>,
    /// containerd's socket (overrides runtimes.container.containerd_socket).
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
    /// containerd namespace of this aosd's containers (overrides runtimes.container.namespace).
    #[arg(long)]
    namespace: Option<String>,
    /// Print the default config and exit.
    #[arg(long)]
    print_default_config: bool,
}

impl Cli {
    fn config(&self) -> anyhow::Result<Config> {
        let required = self.config != Path::new(DEFAULT_CONFIG);
        let mut c = Config::load(&self.config, required)?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(s) = &self.socket {
            c.api.socket = s.clone();
        }
        if let Some(m) = &self.socket_mode {
            c.api.socket_mode = m.clone();
        }
        if let Some(g) = &self.group {
            c.api.group = g.clone();
        }
        if let Some(n) = &self.node_id {
            c.node.id = n.clone();
        }
        if let Some(s) = &self.containerd_socket {
            c.runtimes.container.containerd_socket = s.clone();
        }
        if let Some(n) = &self.namespace {
            c.runtimes.container.namespace = n.clone();
        }
        if let Some(f) = self.log_format {
            c.log.format = f;
        }
        if let Some(l) = &self.log_level {
            c.log.level = l.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

fn init_logging(c: &Config) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => tracing_subscriber::EnvFilter::try_new(f)?,
        _ => tracing_subscriber::EnvFilter::try_new(&c.log.level)
            .with_context(|| format!("log.level {:?} is not a valid filter", c.log.level))?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match c.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// Binds the API socket: refuses to steal one that another aosd serves, removes a stale one,
/// and sets its mode and group.
async fn bind_socket(
    c: &Config,
    group: Option<nix::unistd::Gid>,
) -> anyhow::Result<tokio::net::UnixListener> {
    let path = &c.api.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "another process is serving {}; stop it or choose another --socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("failed to remove stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("failed to bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(c.socket_mode()?))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(gid))
            .with_context(|| format!("failed to give {} to its group", path.display()))?;
    }
    Ok(listener)
}

fn controller_config(
    c: &Config,
    events: &Recorder,
    metrics: &ControllerMetrics,
) -> ControllerConfig {
    ControllerConfig {
        concurrency: c.controllers.concurrency,
        resync: c.controllers.resync.0,
        backoff: Backoff {
            base: c.controllers.backoff_base.0,
            max: c.controllers.backoff_max.0,
            ..Backoff::default()
        },
        shutdown_grace: c.controllers.shutdown_grace.0,
        events: events.clone(),
        metrics: metrics.clone(),
    }
}

fn node_config(c: &Config) -> NodeConfig {
    let mut runtimes = Vec::new();
    let container = &c.runtimes.container;
    for (t, enabled, max) in [
        (
            RuntimeType::Container,
            container.enabled,
            container.max_instances,
        ),
        (
            RuntimeType::Boot,
            c.runtimes.boot.enabled,
            c.runtimes.boot.max_instances,
        ),
        (
            RuntimeType::Rootfs,
            c.runtimes.rootfs.enabled,
            c.runtimes.rootfs.max_instances,
        ),
    ] {
        if enabled {
            runtimes.push((t, max));
        }
    }
    let mut partitions = vec![("data".to_string(), c.data_dir.clone())];
    partitions.extend(
        c.node
            .partitions
            .iter()
            .map(|(n, p)| (n.clone(), p.clone())),
    );
    NodeConfig {
        node_id: aos_node_controller::host::node_id(Some(&c.node.id)),
        dmips: Some(c.node.dmips).filter(|d| *d != 0),
        labels: c.node.labels.clone(),
        runtimes,
        partitions,
        usage_interval: c.node.usage_interval.0,
        lost_after: lost_after(c),
        address: c.node.address,
    }
}

/// `node.lost_after`, raised to twice `node.usage_interval` where it is shorter: a node is lost
/// only after it has missed a heartbeat.
fn lost_after(c: &Config) -> Duration {
    let (lost, beat) = (c.node.lost_after.0, c.node.usage_interval.0);
    if lost < beat * 2 {
        tracing::warn!(
            lost_after = %c.node.lost_after,
            usage_interval = %c.node.usage_interval,
            "node.lost_after is shorter than two heartbeats; using twice node.usage_interval"
        );
        return beat * 2;
    }
    lost
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// The data dir, created private (0700) and made so again at every start: it holds the store
/// (env values of every spec) and every instance's files.
fn data_dir(c: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&c.data_dir)
        .with_context(|| format!("failed to create data dir {}", c.data_dir.display()))?;
    std::fs::set_permissions(&c.data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to make {} private", c.data_dir.display()))
}

async fn run(c: Config, started: Instant) -> anyhow::Result<()> {
    data_dir(&c)?;
    let backend = store::open(&c).await?;
    let image_env = images::env(&c)?;
    let auth = auth::Auth::new(&c.api.group);
    let node = node_config(&c);
    let node_id = node.node_id.clone();
    let listener = bind_socket(&c, auth.group()).await?;
    let shutdown = CancellationToken::new();

    // A reboot aosd makes itself stops the instances first (see reboot.rs).
    let stopper = Arc::new(reboot::InstanceStopper::new(
        &shutdown,
        c.runtimes.container.stop_grace.0,
    ));
    let api = server::ApiServer::new(
        backend.clone(),
        auth,
        node.node_id.clone(),
        instances::instances_dir(&c),
        c.images.archive_dirs.clone(),
        stopper.env.clone(),
    );
    let server = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(server::bound_message))
        .add_service(aos_rpc::AosdServer::new(api).max_decoding_message_size(64 << 20))
        .serve_with_incoming_shutdown(
            // Every connection through the relay that accepts any client's authority.
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                |c| c.map(authority::relay),
            ),
            shutdown.clone().cancelled_owned(),
        );
    let server = tokio::spawn(server);
    tracing::info!(
        socket = %c.api.socket.display(),
        data_dir = %c.data_dir.display(),
        node_id = %node.node_id,
        ready_ms = started.elapsed().as_millis() as u64,
        "API ready"
    );

    let runtime = instances::RuntimeState::default();
    let mut node_reconciler = NodeReconciler::new(node);
    if c.runtimes.container.enabled {
        node_reconciler = node_reconciler.with_runtime_check(runtime.check());
    }
    node_reconciler
        .ensure_node(&Api::new(backend.clone()))
        .await
        .context("failed to create the Node resource")?;
    let mut controllers = tokio::task::JoinSet::new();
    controllers.spawn(reregister(
        backend.clone(),
        node_reconciler.object_name(),
        c.node.usage_interval.0,
        shutdown.clone(),
    ));
    let reporting = reporting::Reporting::start(&c, &backend, &mut controllers, &shutdown).await?;
    let base = controller_config(&c, &reporting.events, &reporting.metrics);
    controllers.spawn(
        Controller::new(node_reconciler, backend.clone(), base.clone()).run(shutdown.clone()),
    );
    instances::spawn(
        &mut controllers,
        &c,
        image_env.store.clone(),
        backend.clone(),
        base.clone(),
        stopper.clone(),
        runtime,
    )?;
    let before_reboot: Option<Arc<dyn aos_slots::machine::BeforeReboot>> =
        c.runtimes.container.enabled.then(|| stopper.clone() as _);
    // The node's BootSlot and RootfsSlot are named after it, like its Node.
    let name = aos_node_controller::host::object_name(&node_id);
    if c.node.in_unit() {
        // Every node of a unit contends; the lease holder places. A leader lost for as long
        // as a node is lost is replaced.
        controllers.spawn(aos_placement_controller::run(
            backend.clone(),
            aos_placement_controller::PlacementConfig {
                node: name.clone(),
                lease: lost_after(&c),
                interval: c.node.usage_interval.0,
                departed_after: c.node.departed_after.0,
            },
            shutdown.clone(),
        ));
    }
    if c.runtimes.boot.enabled {
        boot::spawn(
            &mut controllers,
            &c,
            &name,
            backend.clone(),
            base.clone(),
            &shutdown,
            before_reboot.clone(),
        )
        .await?;
    }
    if c.runtimes.rootfs.enabled {
        rootfs::spawn(
            &mut controllers,
            &c,
            &name,
            backend.clone(),
            base.clone(),
            &shutdown,
            before_reboot.clone(),
        )
        .await?;
    }
    images::spawn(
        &mut controllers,
        image_env,
        backend.clone(),
        base.clone(),
        c.images.gc_interval.0,
        &shutdown,
    );

    // Alerts over the usage in status, and the cloud connector.
    reporting.spawn_watchers(&c, &node_id, &backend, &mut controllers, &shutdown);

    tokio::select! {
        _ = shutdown_signal() => {}
        r = server => {
            tracing::error!(result = ?r, "API server stopped");
        }
    }
    shutdown.cancel();
    while controllers.join_next().await.is_some() {}
    reporting.finish().await;
    let _ = std::fs::remove_file(&c.api.socket);
    tracing::info!("stopped");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", include_str!("../../../deploy/aosd.toml"));
        return Ok(());
    }
    let config = cli.config()?;
    // Before any thread starts: it may set an environment variable.
    let roots = tls_roots::ensure(&config.data_dir);
    init_logging(&config)?;
    match roots {
        Ok(tls_roots::Roots::BuiltIn(file)) => tracing::warn!(
            file = %file.display(),
            "the host has no CA certificates: HTTPS trusts the built-in Mozilla roots"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "failed to write the built-in TLS roots"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(config, started));
    // A blocking task stuck in the kernel (a hung network filesystem) must not keep aosd from
    // exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    result
}

/// Makes this node's Node again when it is deleted while the node runs (as a kubelet registers
/// again): in a unit, the leader forgets what a node without a Node left in the store.
async fn reregister(
    backend: Arc<dyn aos_store::Backend>,
    name: String,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let api = Api::<aos_api::NodeSpec>::new(backend);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match api.get_opt(&name).await {
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => {
                tracing::warn!(node = name, "this node's Node was deleted: making it again");
                let node = aos_api::Object::new(name.clone(), aos_api::NodeSpec::default());
                if let Err(e) = api.apply(&node).await {
                    tracing::warn!(error = %e, "failed to make this node's Node again");
                }
            }
        }
    }
}
