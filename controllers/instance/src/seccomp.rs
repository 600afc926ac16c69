//! The system-call filter every instance runs under unless its item asks for `unconfined` and
//! the node allows that: the calls Docker's and containerd's default profile (RuntimeDefault)
//! keep from containers, as a deny list over an allow-all default, so that a service never
//! breaks on a harmless call the list forgot. Refused with EPERM: new namespaces (the
//! namespace flags of clone and unshare; setns), keyrings (keyctl, add_key, request_key), eBPF,
//! perf events, io_uring, userfaultfd, kernel modules and kexec, mounts, swap, clocks, reboot,
//! process_vm_*, open_by_handle_at and the obsolete calls Docker also refuses. clone3 answers
//! ENOSYS, so that C libraries fall back to clone, whose flags the filter can see. Only the
//! native architecture is allowed: a 32-bit call on a 64-bit node kills the caller.

use serde_json::{json, Value};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Namespace flags of clone(2) and unshare(2): NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0000_0080,
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// Refused outright.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "syslog",
    "umount",
    "umount2",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// The `linux.seccomp` section of the runtime spec.
pub fn default_profile() -> Value {
    let mut syscalls = vec![
        json!({"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}),
    ];
    // One rule per flag: a call is refused when any namespace flag is set (rules of one name
    // are alternatives; conditions inside a rule all hold).
    for call in ["clone", "unshare"] {
        for flag in NAMESPACE_FLAGS {
            syscalls.push(json!({
                "names": [call],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_valid_oci_and_refuses_namespaces_keyrings_bpf_and_io_uring() {
        let p = default_profile();
        let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(
            parsed.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
        );
        for name in [
            "keyctl",
            "add_key",
            "bpf",
            "perf_event_open",
            "io_uring_setup",
            "setns",
        ] {
            assert!(DENIED.contains(&name), "{name}");
        }
        let clone_user = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["names"][0] == "unshare" && s["args"][0]["value"] == 0x1000_0000);
        assert!(clone_user, "unshare(CLONE_NEWUSER) is refused");
    }
}
