//! aosctl: the command line of aosd. Talks to aosd's API socket (`--socket`, `AOSD_SOCKET`).
// A command line: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `print!` for this binary: a closed stdout ends the command quietly (see `out`).
macro_rules! print {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// `println!` for this binary: a closed stdout ends the command quietly (see `out`).
macro_rules! println {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

mod apply;
mod get;
mod logs;
mod out;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use aosctl::client::Client;
use aosctl::print;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "aosctl",
    version,
    about = "Control an aosd node agent",
    propagate_version = true
)]
struct Cli {
    /// aosd's API socket.
    #[arg(long, global = true, env = "AOSD_SOCKET", default_value = aos_rpc::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or update resources from files, directories or stdin (-).
    Apply(apply::ApplyArgs),
    /// Show the differences between files and what the node has (exit 1 when there are some).
    Diff(apply::DiffArgs),
    /// List or show resources: get KIND[,KIND…] [NAME…].
    Get(get::GetArgs),
    /// Show one resource in detail.
    Describe {
        kind: String,
        name: Option<String>,
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
    },
    /// Delete resources by kind and name, or those in files.
    Delete(apply::DeleteArgs),
    /// Wait for a condition of a resource: wait KIND/NAME --for=condition=Ready.
    Wait(get::WaitArgs),
    /// Build an OCI image archive from a service folder (meta/config.yaml + src/), or with
    /// --boot from a partition image (a boot component).
    Pack {
        /// The service folder, or with --boot the partition image.
        dir: PathBuf,
        /// DIR is a partition image: pack it as a boot component (gzip).
        #[arg(long, conflicts_with = "rootfs")]
        boot: bool,
        /// DIR is a root filesystem tree: pack it as a rootfs component (squashfs), full, or
        /// incremental with --base.
        #[arg(long)]
        rootfs: bool,
        /// The tree of the version an incremental rootfs image updates.
        #[arg(long, requires = "rootfs")]
        base: Option<PathBuf>,
        /// The file in a rootfs tree whose first line is its version.
        #[arg(long, default_value = "etc/aos/version")]
        version_file: String,
        #[arg(short = 'o', long, default_value = "service.tar")]
        output: PathBuf,
        /// Platforms (os/arch), comma separated; an index when more than one.
        #[arg(long, value_delimiter = ',')]
        platform: Vec<String>,
    },
    /// Push an archive made by `pack` to a registry: push ARCHIVE host[:port]/repo:tag.
    Push {
        archive: PathBuf,
        reference: String,
        /// Registry hosts reached over plain HTTP.
        #[arg(long)]
        insecure: Vec<String>,
    },
    /// Show the manifest, image config and item config of an archive, layout or registry image.
    Inspect {
        /// A .tar archive, a layout directory, or a registry reference.
        image: String,
        /// Registry hosts reached over plain HTTP.
        #[arg(long)]
        insecure: Vec<String>,
        /// The platform (os/arch) whose manifest to show; default: this machine's.
        #[arg(long, default_value_t = aos_api::native_platform())]
        platform: String,
    },
    /// Print an instance's output: logs NAME [-f] [--tail N] [--since 5m].
    Logs(logs::LogsArgs),
    /// Show the CPU, RAM, state and storage use of instances.
    Top(logs::TopArgs),
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
    /// Check that aosd answers.
    Health,
}

/// Splits `kind/name` or `kind name`.
pub fn kind_and_name(kind: &str, name: Option<&str>) -> anyhow::Result<(String, Option<String>)> {
    let (k, n) = match kind.split_once('/') {
        Some((k, n)) => (k.to_string(), Some(n.to_string())),
        None => (kind.to_string(), name.map(str::to_string)),
    };
    let info = aos_api::registry::lookup(&k).with_context(|| {
        format!(
            "unknown kind {k:?}; known kinds: {}",
            aos_api::KINDS
                .iter()
                .map(|k| k.plural)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    Ok((info.kind.to_string(), n))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completion { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "aosctl", &mut script);
        out::write_bytes(&script);
        return Ok(ExitCode::SUCCESS);
    }
    match &cli.command {
        Command::Pack {
            dir,
            output,
            platform,
            boot,
            rootfs,
            base,
            version_file,
        } if *boot || *rootfs => {
            let (os, arch) = match platform.as_slice() {
                [] => (
                    "linux".to_string(),
                    aos_api::oci_arch(std::env::consts::ARCH).to_string(),
                ),
                [p] => p
                    .split_once('/')
                    .map(|(o, a)| (o.to_string(), a.to_string()))
                    .ok_or_else(|| anyhow::anyhow!("a platform is os/arch, like linux/arm64"))?,
                _ => anyhow::bail!("a component is for one platform"),
            };
            let (what, p) = if *boot {
                ("boot", aosctl::pack::pack_boot(dir, output, &os, &arch)?)
            } else {
                let p = aosctl::pack::pack_rootfs(
                    dir,
                    base.as_deref(),
                    version_file,
                    output,
                    &os,
                    &arch,
                )?;
                let what = if base.is_some() {
                    "incremental rootfs"
                } else {
                    "full rootfs"
                };
                (what, p)
            };
            println!(
                "{} packed: {what} component {} ({} bytes), manifest {}",
                output.display(),
                p.layer_digest,
                p.layer_size,
                p.manifest_digest
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Pack {
            dir,
            output,
            platform,
            ..
        } => {
            let p = aosctl::pack::pack_for(dir, output, platform)?;
            println!(
                "{} packed: manifest {}",
                output.display(),
                p.manifest_digest
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Inspect {
            image,
            insecure,
            platform,
        } => {
            let doc = aosctl::inspect::inspect(image, insecure, platform).await?;
            print!("{}", print::yaml(&doc));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Push {
            archive,
            reference,
            insecure,
        } => {
            let digest = aosctl::push::push(archive, reference, insecure)
                .await
                .map_err(|e| aosctl::inspect::with_hint(e.into(), reference, insecure))?;
            println!("{reference} pushed: {digest}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let client = Client::connect(&cli.socket).await?;
    match cli.command {
        Command::Apply(a) => apply::apply(&client, a).await,
        Command::Diff(a) => apply::diff(&client, a).await,
        Command::Get(a) => get::get(&client, a).await,
        Command::Describe {
            kind,
            name,
            selector,
        } => {
            let (kind, name) = kind_and_name(&kind, name.as_deref())?;
            let objs = match name {
                Some(n) => vec![client.get(&kind, &n).await?],
                None => {
                    client
                        .list(&kind, selector.as_deref().unwrap_or(""))
                        .await?
                        .0
                }
            };
            if objs.is_empty() {
                bail!("no {kind} resources found");
            }
            // Events are records themselves: describing one lists no events of its own.
            let events = if kind == "Event" {
                Vec::new()
            } else {
                client.list("Event", "").await?.0
            };
            let now = chrono::Utc::now();
            let text: Vec<String> = objs
                .iter()
                .map(|o| print::describe(o, &events, now))
                .collect();
            print!("{}", text.join("\n"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete(a) => apply::delete(&client, a).await,
        Command::Wait(a) => get::wait(&client, a).await,
        Command::Logs(a) => logs::logs(&client, a).await,
        Command::Top(a) => logs::top(&client, a).await,
        Command::Health => {
            let h = client.health().await?;
            println!(
                "{} (aosd {}, node {}, revision {})",
                h.status, h.version, h.node_id, h.revision
            );
            Ok(if h.status == "ok" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Completion { .. }
        | Command::Pack { .. }
        | Command::Push { .. }
        | Command::Inspect { .. } => {
            unreachable!("handled above")
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let diff = matches!(cli.command, Command::Diff(_));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if out::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Like kubectl diff: 1 means differences, so errors are 2 there.
            ExitCode::from(if diff { 2 } else { 1 })
        }
    }
}
