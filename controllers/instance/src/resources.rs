//! What the node's resources give an instance that asks for them (item config `resources`):
//! devices (their nodes and cgroup access), bind mounts, env, groups and hosts lines. The
//! requested mode is honoured (`r`/`ro`: devices readable only, mounts read-only), and an
//! instance joins only the groups the node's resource names, never root's group (a device
//! node's owning group, usually 0, is not given).

use std::path::{Path, PathBuf};

use crate::config::{NodeResources, RequestedResource, ResourceDevice};
use crate::spec::{Bind, Device};
use crate::InstanceError;

/// Everything the requested resources add to an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Granted {
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    /// Device nodes and their cgroup access.
    pub devices: Vec<Device>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// Directories and files the top layer must hold as mount points.
    pub mount_dirs: Vec<String>,
    /// Files the top layer must hold as mount points.
    pub mount_files: Vec<String>,
    /// Supplementary groups, sorted, without 0.
    pub groups: Vec<u32>,
    /// Extra `/etc/hosts` lines.
    pub hosts: Vec<String>,
}

fn device(d: &ResourceDevice, read_only: bool) -> Result<Device, InstanceError> {
    use nix::sys::stat::{major, minor, stat, SFlag};
    let st = stat(d.host_path.as_str()).map_err(|source| InstanceError::Sys {
        what: format!("device {}", d.host_path),
        source,
    })?;
    let kind = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFCHR => 'c',
        SFlag::S_IFBLK => 'b',
        _ => {
            return Err(InstanceError::Config(format!(
                "{} is not a device",
                d.host_path
            )))
        }
    };
    let declared = d.permissions.clone().unwrap_or_else(|| "rwm".into());
    // Read-only: what the node declares, less writing and making nodes.
    let access: String = if read_only {
        declared.chars().filter(|c| *c == 'r').collect()
    } else {
        declared
    };
    Ok(Device {
        path: d
            .container_path
            .clone()
            .unwrap_or_else(|| d.host_path.clone()),
        kind,
        major: major(st.st_rdev) as i64,
        minor: minor(st.st_rdev) as i64,
        access,
        mode: st.st_mode & 0o7777,
        // The node owns the device node; the instance reaches it through the groups the
        // resource names.
        gid: 0,
    })
}

fn group_id(g: &str) -> Result<u32, InstanceError> {
    let gid = match g.parse() {
        Ok(n) => n,
        Err(_) => match nix::unistd::Group::from_name(g) {
            Ok(Some(gr)) => gr.gid.as_raw(),
            _ => {
                return Err(InstanceError::Config(format!(
                    "host group {g:?} does not exist"
                )))
            }
        },
    };
    if gid == 0 {
        return Err(InstanceError::Config(format!(
            "group {g:?} is root's: never given to an instance"
        )));
    }
    Ok(gid)
}

/// What the resources `wanted` give, with the node's declarations in `node`.
pub fn grant(node: &NodeResources, wanted: &[RequestedResource]) -> Result<Granted, InstanceError> {
    let mut g = Granted::default();
    let resolved = node
        .resolve(wanted)
        .map_err(InstanceError::ResourceMissing)?;
    for (r, w) in resolved.iter().zip(wanted) {
        let read_only = w.read_only();
        g.env.extend(r.env.iter().cloned());
        for d in &r.devices {
            let dev = device(d, read_only)?;
            if let Some(parent) = Path::new(&dev.path).parent() {
                g.mount_dirs.push(parent.display().to_string());
            }
            g.devices.push(dev);
        }
        for m in &r.mounts {
            let src = PathBuf::from(&m.source);
            if src.is_dir() {
                g.mount_dirs.push(m.destination.clone());
            } else {
                g.mount_files.push(m.destination.clone());
            }
            g.binds.push(Bind {
                source: src,
                destination: m.destination.clone(),
                read_only: read_only || m.options.iter().any(|o| o == "ro"),
            });
        }
        for grp in &r.groups {
            g.groups.push(group_id(grp)?);
        }
        g.hosts.extend(r.hosts.iter().cloned());
    }
    g.groups.sort_unstable();
    g.groups.dedup();
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(groups: &[&str]) -> NodeResources {
        serde_json::from_value(serde_json::json!({"resources": [{
            "name": "null",
            "devices": [{"hostPath": "/dev/null"}],
            "mounts": [{"source": "/etc/hostname", "destination": "/etc/host-name"}],
            "groups": groups,
        }]}))
        .unwrap()
    }

    fn want(mode: &str) -> Vec<RequestedResource> {
        vec![RequestedResource {
            name: "null".into(),
            mode: mode.into(),
        }]
    }

    #[test]
    fn a_read_only_request_gets_read_access_and_read_only_mounts() {
        let ro = grant(&node(&[]), &want("ro")).unwrap();
        assert_eq!(ro.devices[0].access, "r");
        assert!(ro.binds[0].read_only);
        let rw = grant(&node(&[]), &want("rw")).unwrap();
        assert_eq!(rw.devices[0].access, "rwm");
        assert!(!rw.binds[0].read_only);
    }

    #[test]
    fn only_the_groups_the_node_names_are_joined_and_never_root() {
        let g = grant(&node(&[]), &want("rw")).unwrap();
        assert!(
            g.groups.is_empty(),
            "the device's owning group is not given"
        );
        assert_eq!(g.devices[0].gid, 0);
        assert_eq!(grant(&node(&["44"]), &want("rw")).unwrap().groups, [44]);
        let root = grant(&node(&["root"]), &want("rw")).unwrap_err();
        assert!(root.to_string().contains("root's"), "{root}");
        assert!(grant(&node(&["0"]), &want("rw")).is_err());
    }
}
