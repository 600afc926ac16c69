//! Hosts for the suites that need several machines: network namespaces standing for separate
//! hosts on one LAN (a bridge of the test's own in the test's namespace, with an address of its
//! own, and a veth per host whose other end is the host's `eth0`). Each host has its own links,
//! routes and firewall; mounts, processes and Unix sockets stay shared. Everything is removed
//! when the [`Lan`] is dropped.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::node::rand_suffix;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One host: its namespace (for `AosdOptions::netns`) and its address on the LAN.
pub struct Host {
    pub netns: PathBuf,
    pub addr: Ipv4Addr,
    name: String,
    veth: String,
}

pub struct Lan {
    bridge: String,
    /// The test's own address on the LAN (services of the test, such as etcd, listen there).
    pub gateway: Ipv4Addr,
    pub hosts: Vec<Host>,
}

impl Lan {
    /// `n` hosts on 10.213.K.0/24 (K from the process id), the test at .254, host `i` at
    /// `.i+1`.
    pub fn new(n: usize) -> Lan {
        let id = format!("{}{}", std::process::id() % 10_000, rand_suffix());
        let k = (std::process::id() % 250) as u8;
        let at = |h: u8| Ipv4Addr::new(10, 213, k, h);
        let mut lan = Lan {
            bridge: format!("aoslan{id}"),
            gateway: at(254),
            hosts: Vec::new(),
        };
        ip(&["link", "add", &lan.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.gateway),
            "dev",
            &lan.bridge,
        ]);
        ip(&["link", "set", &lan.bridge, "up"]);
        for i in 0..n {
            let name = format!("aoshost{id}-{i}");
            let host = Host {
                netns: PathBuf::from("/run/netns").join(&name),
                addr: at(i as u8 + 1),
                veth: format!("aoslv{id}{i}"),
                name,
            };
            ip(&["netns", "add", &host.name]);
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", "eth0", "netns",
                &host.name,
            ]);
            ip(&["link", "set", &host.veth, "master", &lan.bridge, "up"]);
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", host.name.as_str()];
                all.extend_from_slice(args);
                ip(&all);
            };
            inside(&["addr", "add", &format!("{}/24", host.addr), "dev", "eth0"]);
            inside(&["link", "set", "eth0", "up"]);
            inside(&["link", "set", "lo", "up"]);
            lan.hosts.push(host);
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        };
        for h in &self.hosts {
            quiet(&["link", "del", &h.veth]);
            quiet(&["netns", "del", &h.name]);
        }
        quiet(&["link", "del", &self.bridge]);
    }
}
