//! Instance: one running instance of an item version for a subject, on one runtime.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::check_not_empty;
use crate::{impl_status, AosDuration, CommonStatus, FieldError, RuntimeType, Spec};

/// One environment override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
    /// The override expires after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<DateTime<Utc>>,
}

/// The reference's run parameters: restart after `restartInterval`; at most `startBurst`
/// starts within `startInterval`, then failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_interval: Option<AosDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<AosDuration>,
    /// Time between SIGTERM and SIGKILL on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace: Option<AosDuration>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceNetwork {
    pub network_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_connections: Vec<String>,
    /// Exposed ports published on the host: `hostPort:port[/tcp|udp]` (reachable on the host's
    /// addresses, 127.0.0.1 included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<String>,
}

/// Parses `hostPort:port[/proto]`.
pub fn parse_host_port(s: &str) -> Result<(u16, u16, &str), String> {
    let (host, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} must be hostPort:port[/tcp|udp]"))?;
    let host: u16 = host
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{s:?}: {host:?} is not a port number"))?;
    let (a, b, proto) = crate::kinds::network::parse_port_spec(rest)?;
    if a != b {
        return Err(format!("{s:?}: publish one port, not a range"));
    }
    Ok((host, a, proto))
}

/// An HTTP GET probe: any status from 200 to 399 passes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetProbe {
    #[serde(default = "root_path")]
    pub path: String,
    pub port: u16,
    /// Default: the instance's address (loopback when it shares the host network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn root_path() -> String {
    "/".into()
}

/// A TCP probe: the port accepts a connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpProbe {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A command run inside the instance: exit status 0 passes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecProbe {
    pub command: Vec<String>,
}

/// One probe, as kubelet has them: exactly one of exec, httpGet, tcpSocket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpProbe>,
    /// Wait after the start before the first probe (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<AosDuration>,
    /// Default 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<AosDuration>,
    /// Default 1 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<AosDuration>,
    /// Consecutive failures that count as failed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes that count as passed after a failure (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
}

/// Startup gates the other two; readiness sets the Ready condition; liveness restarts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub item_id: String,
    pub version: String,
    pub subject_id: String,
    #[serde(default)]
    pub index: u64,
    pub runtime: RuntimeType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<InstanceNetwork>,
    #[serde(default)]
    pub priority: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    /// The Node (by name) that runs it. Empty: on a node of its own (`node.placement =
    /// "local"`), the node runs it; in a unit (`"unit"`), the placement controller sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Labels a node must carry (all of them, with these values) for placement to choose it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_selector: std::collections::BTreeMap<String, String>,
}

/// Exactly the reference's states.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    #[default]
    Activating,
    Active,
    Inactive,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastExit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Whether an environment override is in force.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum EnvState {
    #[default]
    Applied,
    Expired,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarStatus {
    pub name: String,
    pub state: EnvState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Resource usage of a running instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceUsage {
    /// Share of one core since the previous sample.
    pub cpu_percent: f64,
    /// The same as DMIPS of this node.
    pub cpu_dmips: u64,
    pub ram_bytes: u64,
    pub state_bytes: u64,
    pub storage_bytes: u64,
    pub updated_at: DateTime<Utc>,
    /// Bytes received and sent on the instance's network (since its attachment).
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    /// Total CPU time, for the next sample's rate.
    #[serde(default)]
    pub cpu_time_ns: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// UUID v3 of `itemId:subjectId:index`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
    #[serde(default)]
    pub state: InstanceState,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<String>,
    /// The instance's own user and group (persistent, from the node's pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Host pid of the task's first process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Milliseconds of each phase of its last start: `start` (container, task and network
    /// made and started), `ready` (from the start to Ready: its probes passing).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub phase_millis: std::collections::BTreeMap<String, u64>,
    /// The restart window: when it began and how many starts it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub window_starts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVarStatus>,
    /// Layer resources the running task's rootfs is made of, lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<InstanceUsage>,
    /// The generation that failed: a new one starts afresh.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_generation: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
impl_status!(InstanceStatus);

impl Spec for InstanceSpec {
    const KIND: &'static str = "Instance";
    type Status = InstanceStatus;

    /// An Instance's name is its container's id and, by default, its host name: at most 63
    /// characters, and no two separators in a row (containerd refuses `a..b`).
    fn validate_name(name: &str, errors: &mut Vec<FieldError>) {
        if name.len() > 63 {
            errors.push(FieldError::new(
                "metadata.name",
                "an Instance's name must be at most 63 characters (it is a host name)",
            ));
        }
        let seps = |c: char| c == '.' || c == '-';
        if name
            .chars()
            .zip(name.chars().skip(1))
            .any(|(a, b)| seps(a) && seps(b))
        {
            errors.push(FieldError::new(
                "metadata.name",
                format!(
                    "{} has two separators in a row, which container ids may not",
                    crate::validate::quoted(name)
                ),
            ));
        }
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_not_empty("spec.itemId", &self.item_id, errors);
        check_not_empty("spec.version", &self.version, errors);
        check_not_empty("spec.subjectId", &self.subject_id, errors);
        for (i, e) in self.env.iter().enumerate() {
            let ok = !e.name.is_empty()
                && !e.name.contains('=')
                && !e.name.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                errors.push(FieldError::new(
                    format!("spec.env[{i}].name"),
                    format!("{:?} is not a valid environment variable name", e.name),
                ));
            }
        }
        if let Some(n) = &self.network {
            check_not_empty("spec.network.networkId", &n.network_id, errors);
            for (i, p) in n.exposed_ports.iter().enumerate() {
                if let Err(e) = crate::kinds::network::parse_port_spec(p) {
                    errors.push(FieldError::new(
                        format!("spec.network.exposedPorts[{i}]"),
                        e,
                    ));
                }
            }
            for (i, h) in n.host_ports.iter().enumerate() {
                if let Err(e) = parse_host_port(h) {
                    errors.push(FieldError::new(format!("spec.network.hostPorts[{i}]"), e));
                }
            }
            for (i, c) in n.allowed_connections.iter().enumerate() {
                let ok = c.split_once('/').is_some_and(|(item, ports)| {
                    !item.is_empty() && crate::kinds::network::parse_port_spec(ports).is_ok()
                });
                if !ok {
                    errors.push(FieldError::new(
                        format!("spec.network.allowedConnections[{i}]"),
                        format!("{c:?} must be itemId/port[-port][/tcp|udp]"),
                    ));
                }
            }
        }
        if let Some(p) = &self.probes {
            for (name, probe) in [
                ("startup", &p.startup),
                ("readiness", &p.readiness),
                ("liveness", &p.liveness),
            ] {
                let Some(probe) = probe else { continue };
                let kinds = [
                    probe.exec.is_some(),
                    probe.http_get.is_some(),
                    probe.tcp_socket.is_some(),
                ];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    errors.push(FieldError::new(
                        format!("spec.probes.{name}"),
                        "exactly one of exec, httpGet or tcpSocket must be set",
                    ));
                }
                if probe.exec.as_ref().is_some_and(|e| e.command.is_empty()) {
                    errors.push(FieldError::new(
                        format!("spec.probes.{name}.exec.command"),
                        "must not be empty",
                    ));
                }
                if probe.failure_threshold == Some(0) || probe.success_threshold == Some(0) {
                    errors.push(FieldError::new(
                        format!("spec.probes.{name}"),
                        "thresholds must be at least 1",
                    ));
                }
            }
        }
        if self.runtime != RuntimeType::Container && self.index != 0 {
            errors.push(FieldError::new(
                "spec.index",
                "boot and rootfs runtimes run a single instance: index must be 0",
            ));
        }
    }
}
