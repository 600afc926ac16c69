//! The shim process's life as containerd drives it: `start` (spawn a server, or reuse the one
//! of the task's group), serve, and `delete` (clean up a task whose shim is gone).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::{Config, DeleteResponse, Flags, StartOpts};

use crate::container;
use crate::exits::Exits;
use crate::runc::Runc;
use crate::task::Service;

/// The annotation that puts tasks in one shim (containerd's runc shim reads the same one).
pub const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

/// The group a bundle's spec names, else the task's own id.
fn grouping(bundle: &Path, id: &str) -> String {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|s| {
            s["annotations"][GROUP_ANNOTATION]
                .as_str()
                .map(str::to_string)
        })
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| id.to_string())
}

pub struct Process {
    id: String,
    namespace: String,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for Process {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Process {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let group = grouping(Path::new("."), &opts.id);
        let address = spawn(opts, &group, Vec::new()).await?;
        containerd_shim::util::write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle =
            std::env::current_dir().map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
        // The runtime options Create recorded in the bundle (runc's defaults without them).
        let o = containerd_shim::util::read_options(&bundle).await?;
        let runc = Runc::new(
            &o.binary_name,
            &o.root,
            &self.namespace,
            Exits::start().await?,
        );
        if let Err(e) = runc
            .run(&bundle, &["delete", "--force", &self.id], None)
            .await
        {
            log::warn!("delete {}: {e}", self.id);
        }
        container::unmount(&bundle);
        Ok(DeleteResponse {
            pid: 0,
            exit_status: 137,
            exited_at: Some(crate::process::now()).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        let exits = match Exits::start().await {
            Ok(e) => e,
            Err(e) => {
                log::error!("cannot watch exits: {e}");
                std::process::exit(1);
            }
        };
        Service::new(self.namespace.clone(), exits, publisher, self.exit.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_comes_from_the_spec_s_annotation_else_the_task_s_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(grouping(dir.path(), "t1"), "t1");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"annotations":{{"{GROUP_ANNOTATION}":"aos-3"}}}}"#),
        )
        .unwrap();
        assert_eq!(grouping(dir.path(), "t1"), "aos-3");
    }
}
