//! The `Containers` port: what the Instance controller needs from a container runtime, with
//! the types it speaks (task specs, states, events, errors). The containerd implementation is
//! in the crate root; a fake lives with the port's conformance suite.

use std::collections::HashMap;
use std::path::PathBuf;

use futures::stream::BoxStream;

/// Why a call to the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    /// The runtime's socket cannot be reached.
    #[error("failed to connect to containerd at {path}: {message}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        message: String,
    },
    /// containerd does not answer (stopped, restarting): nothing is known of the tasks.
    #[error("containerd does not answer ({op} {id}): {message}")]
    Unavailable {
        /// The call (`inspect`, `run`, ...).
        op: &'static str,
        /// The container it was about.
        id: String,
        /// What the transport said.
        message: String,
    },
    /// The runtime answered and refused the call.
    #[error("failed to {op} {id}: {message}")]
    Call {
        /// The call.
        op: &'static str,
        /// The container it was about.
        id: String,
        /// What the runtime said.
        message: String,
    },
    /// The runtime spec does not encode.
    #[error("failed to encode the runtime spec: {0}")]
    Spec(#[from] serde_json::Error),
    /// A file step of a call (a log file, a FIFO).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ContainersError {
    /// The runtime itself is down (rather than refusing one call).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ContainersError::Connect { .. } | ContainersError::Unavailable { .. }
        )
    }

    /// CamelCase, for conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ContainersError::Connect { .. } | ContainersError::Unavailable { .. } => {
                "RuntimeUnavailable"
            }
            ContainersError::Call { .. } => "RuntimeCallFailed",
            ContainersError::Spec(_) => "InvalidRuntimeSpec",
            ContainersError::Io { .. } => "IoError",
        }
    }
}

/// A mount handed to the runtime as the task's rootfs (overlay, bind, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootfsMount {
    /// The filesystem type (`overlay`, `bind`).
    pub type_: String,
    /// The mount source.
    pub source: String,
    /// Mount options (`lowerdir=...`).
    pub options: Vec<String>,
}

/// Where a task's stdout and stderr go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskIo {
    /// Appended to files (the shim opens them).
    Files {
        /// The file of stdout.
        stdout: PathBuf,
        /// The file of stderr.
        stderr: PathBuf,
    },
    /// Piped to a containerd logging binary, with `--key value` arguments.
    Logger {
        /// The logging binary.
        binary: PathBuf,
        /// Its arguments, as `--key value` pairs.
        args: Vec<(String, String)>,
    },
}

impl TaskIo {
    pub(crate) fn uris(&self) -> (String, String) {
        match self {
            TaskIo::Files { stdout, stderr } => (
                format!("file://{}", stdout.display()),
                format!("file://{}", stderr.display()),
            ),
            TaskIo::Logger { binary, args } => {
                let query: Vec<String> = args
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                let uri = format!("binary://{}?{}", binary.display(), query.join("&"));
                (uri.clone(), uri)
            }
        }
    }
}

/// Percent-encodes what a URL query value cannot hold as is.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_./~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Everything needed to run one task.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// The container's (and task's) id.
    pub id: String,
    /// The OCI runtime spec.
    pub spec: oci_spec::runtime::Spec,
    /// Mounted by the shim as the task's rootfs.
    pub rootfs: Vec<RootfsMount>,
    /// Where stdout and stderr go.
    pub io: TaskIo,
    /// Labels kept with the container (who made it, from what).
    pub labels: HashMap<String, String>,
}

/// A state change of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEvent {
    /// The task's process ended.
    Exited {
        /// The container.
        id: String,
        /// The process that ended.
        pid: u32,
        /// Its exit status.
        status: u32,
    },
    /// The kernel killed a process of the task for memory.
    Oom {
        /// The container.
        id: String,
    },
}

impl TaskEvent {
    /// The container the event is about.
    pub fn id(&self) -> &str {
        match self {
            TaskEvent::Exited { id, .. } | TaskEvent::Oom { id } => id,
        }
    }
}

/// The task of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskState {
    /// The task's first process.
    pub pid: u32,
    /// Whether it runs (else it stopped and waits to be deleted).
    pub running: bool,
    /// Meaningful once the task stopped.
    pub exit_status: u32,
}

/// A container the runtime knows, and its task if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// The container's id.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its task, if one was created.
    pub task: Option<TaskState>,
}

/// What the Instance controller needs from a container runtime.
#[async_trait::async_trait]
pub trait Containers: Send + Sync {
    /// Creates the container and its task and starts it; returns the pid.
    async fn run(&self, task: &TaskSpec) -> Result<u32, ContainersError>;
    /// Sends `signal` to the task's first process.
    async fn kill(&self, id: &str, signal: u32) -> Result<(), ContainersError>;
    /// Waits for the task to exit; returns its exit status.
    async fn wait(&self, id: &str) -> Result<u32, ContainersError>;
    /// Deletes the task (if any) and the container; fine if neither exists.
    async fn remove(&self, id: &str) -> Result<(), ContainersError>;
    /// Every container of the namespace.
    async fn list(&self) -> Result<Vec<TaskInfo>, ContainersError>;
    /// One container and its task; `None` when there is no such container.
    async fn inspect(&self, id: &str) -> Result<Option<TaskInfo>, ContainersError>;
    /// Runs a command in a running task (as `user`, with `env`) and returns its exit status.
    async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        args: &[String],
        env: &[String],
        user: (u32, u32),
    ) -> Result<u32, ContainersError>;
    /// Exits and OOMs of every task of the namespace, from now on.
    async fn events(&self) -> Result<BoxStream<'static, TaskEvent>, ContainersError>;
    /// Whether the runtime answers (its version).
    async fn ping(&self) -> Result<String, ContainersError>;
    /// Removes what the runtime keeps for the namespace outside its own state (runc's state
    /// directory) when no container is left; does nothing while one exists.
    async fn release_idle(&self) -> Result<(), ContainersError>;
}
