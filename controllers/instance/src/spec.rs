//! The OCI runtime spec of an instance: a hardened default (own pid, ipc, uts, mount, cgroup
//! and network namespaces; a small bounding set of capabilities and none effective for the
//! instance's own uid; no new privileges; the default system-call filter; masked and read-only
//! kernel paths; a read-only root) with the process, limits, mounts and devices of the
//! instance.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::config::{Limits, CPU_PERIOD};
use crate::InstanceError;

/// The capabilities an instance may hold at most (Docker's default set without NET_RAW,
/// MKNOD, AUDIT_WRITE and SETFCAP); its own uid starts with none of them effective.
pub const BOUNDING_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
];

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A bind mount into the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// A device node given to the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub access: String,
    pub mode: u32,
    pub gid: u32,
}

/// Everything the spec is made of.
#[derive(Clone, Debug, Default)]
pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub cgroups_path: String,
    pub limits: Limits,
    pub binds: Vec<Bind>,
    pub devices: Vec<Device>,
    pub sysctl: BTreeMap<String, String>,
    pub netns: NetNs,
    /// The system-call filter (`linux.seccomp`); `None` runs unconfined.
    pub seccomp: Option<Value>,
}

/// The network namespace of an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NetNs {
    /// A new one of its own, with only loopback: an instance without a Network reaches nothing
    /// and nothing reaches it.
    #[default]
    Own,
    /// The one its Network made (a path under /run/netns).
    Join(String),
    /// The host's: only where the node allows it.
    Host,
}

/// The spec as JSON, in a stable order (the OCI types hold sets and maps: hash this instead).
pub fn document(i: &SpecInput) -> Result<Value, InstanceError> {
    if i.args.is_empty() {
        return Err(InstanceError::Config(
            "the image has neither Entrypoint nor Cmd: nothing to run".into(),
        ));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", format!("size={}", i.limits.tmp_size.max(4096))]}),
    ];
    for b in &i.binds {
        let mode = if b.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": b.destination, "type": "bind", "source": b.source,
            "options": ["rbind", "nosuid", "nodev", mode],
        }));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match &i.netns {
        NetNs::Own => namespaces.push(json!({"type": "network"})),
        NetNs::Join(path) => namespaces.push(json!({"type": "network", "path": path})),
        NetNs::Host => {}
    }
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
    });
    for d in &i.devices {
        resources["devices"].as_array_mut().expect("an array").push(json!({
            "allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor, "access": d.access,
        }));
    }
    if let Some(q) = i.limits.cpu_quota {
        resources["cpu"] = json!({"quota": q, "period": CPU_PERIOD});
    }
    if let Some(m) = i.limits.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(p) = i.limits.pids {
        resources["pids"] = json!({"limit": p});
    }
    let nofile = i.limits.nofile.unwrap_or(1024);
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile})];
    if let Some(p) = i.limits.pids {
        rlimits.push(json!({"type": "RLIMIT_NPROC", "hard": p, "soft": p}));
    }
    let devices: Vec<Value> = i
        .devices
        .iter()
        .map(|d| {
            json!({"path": d.path, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
                   "fileMode": d.mode, "uid": 0, "gid": d.gid})
        })
        .collect();
    let caps: Vec<&str> = BOUNDING_CAPS.to_vec();
    let root_caps = if i.uid == 0 { caps.clone() } else { Vec::new() };
    let spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": true},
        "hostname": i.hostname,
        "process": {
            "terminal": false,
            "user": {"uid": i.uid, "gid": i.gid, "additionalGids": i.additional_gids},
            "args": i.args,
            "env": i.env,
            "cwd": if i.cwd.is_empty() { "/" } else { i.cwd.as_str() },
            "capabilities": {
                "bounding": caps, "permitted": root_caps, "effective": root_caps,
                "inheritable": [], "ambient": [],
            },
            "rlimits": rlimits,
            "noNewPrivileges": true,
        },
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": i.cgroups_path,
            "resources": resources,
            "devices": devices,
            "sysctl": i.sysctl,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    });
    let mut spec = spec;
    if let Some(filter) = &i.seccomp {
        spec["linux"]["seccomp"] = filter.clone();
    }
    Ok(spec)
}

/// The runtime spec of `i`.
#[cfg(test)]
pub fn build(i: &SpecInput) -> Result<oci_spec::runtime::Spec, InstanceError> {
    from_document(document(i)?)
}

pub fn from_document(doc: Value) -> Result<oci_spec::runtime::Spec, InstanceError> {
    Ok(serde_json::from_value(doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SpecInput {
        SpecInput {
            args: vec!["/bin/sh".into(), "-c".into(), "sleep 1".into()],
            env: vec!["AOS_ITEM_ID=item".into()],
            cwd: String::new(),
            uid: 5001,
            gid: 5001,
            hostname: "svc".into(),
            cgroups_path: "/aos/svc".into(),
            limits: Limits {
                cpu_quota: Some(50_000),
                memory: Some(32 << 20),
                pids: Some(20),
                nofile: Some(256),
                tmp_size: 1 << 20,
            },
            binds: vec![Bind {
                source: "/data/state.dat".into(),
                destination: "/state.dat".into(),
                read_only: false,
            }],
            ..SpecInput::default()
        }
    }

    #[test]
    fn the_spec_carries_the_process_limits_and_hardening() {
        let spec = build(&input()).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["process"]["args"][2], "sleep 1");
        assert_eq!(v["process"]["cwd"], "/");
        assert_eq!(v["process"]["user"]["uid"], 5001);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["capabilities"]["effective"], json!([]));
        assert!(!v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_NET_RAW")));
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 32 << 20);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        let rl = v["process"]["rlimits"].as_array().unwrap();
        assert!(rl.contains(&json!({"type": "RLIMIT_NOFILE", "hard": 256, "soft": 256})));
        assert!(rl.contains(&json!({"type": "RLIMIT_NPROC", "hard": 20, "soft": 20})));
        let mounts = v["mounts"].as_array().unwrap();
        let tmp = mounts.iter().find(|m| m["destination"] == "/tmp").unwrap();
        assert!(tmp["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=1048576")));
        assert!(mounts.iter().any(|m| m["destination"] == "/state.dat"
            && m["options"].as_array().unwrap().contains(&json!("rw"))));
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.contains(&json!({"type": "network"})),
            "a network namespace of its own by default"
        );
        assert!(v["linux"].get("seccomp").is_none());
        assert!(v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
    }

    #[test]
    fn a_netns_is_joined_the_host_network_shared_on_request_and_an_empty_command_is_refused() {
        let mut i = input();
        i.netns = NetNs::Host;
        i.seccomp = Some(crate::seccomp::default_profile());
        let v = serde_json::to_value(build(&i).unwrap()).unwrap();
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        i.netns = NetNs::Join("/run/netns/x".into());
        let v = serde_json::to_value(build(&i).unwrap()).unwrap();
        assert!(v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "network", "path": "/run/netns/x"})));
        i.args.clear();
        assert!(matches!(build(&i), Err(InstanceError::Config(_))));
    }
}
