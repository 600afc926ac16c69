//! The firewall, in one nftables table of ours (nothing else is touched), rewritten whole in one
//! atomic `nft -f` run whenever what it must say changes:
//! - NAT: masquerade of networks that may reach the outside; published host ports (DNAT, from
//!   other hosts and from the host itself, 127.0.0.1 included);
//! - forward: replies pass; traffic inside one network passes; an instance is reachable from
//!   elsewhere only on its exposed ports; it reaches instances of other networks only through
//!   its allowed connections, and the outside only if its network allows it;
//! - input (instances to the host): DNS to their gateway and replies, nothing else;
//! - output (the host's own traffic to instances): root reaches every port (probes run as
//!   aosd), other users only exposed and published ports.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::ipam::Cidr;
use crate::NetError;

/// Ports `first..=last` of a protocol (`tcp` or `udp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
    pub proto: String,
}

impl Ports {
    fn nft(&self) -> String {
        if self.first == self.last {
            format!("{} dport {}", self.proto, self.first)
        } else {
            format!("{} dport {}-{}", self.proto, self.first, self.last)
        }
    }
}

/// What the firewall knows of one attached instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatInstance {
    pub ip: Ipv4Addr,
    pub exposed: Vec<Ports>,
    /// Resolved allowed connections: a peer address and its ports.
    pub allowed: Vec<(Ipv4Addr, Ports)>,
    /// (host port, instance port, proto).
    pub published: Vec<(u16, u16, String)>,
}

/// One network as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatNetwork {
    /// The whole network (in a unit: every node's slice).
    pub subnet: Cidr,
    /// This node's gateway on it (its resolver listens there).
    pub gateway: Ipv4Addr,
    /// In a unit: the network's other slices are on other bridges or hosts, reached through
    /// this node's gateway; traffic between the slices passes as inside one bridge.
    pub spans_nodes: bool,
    pub bridge: String,
    pub allow_outside: bool,
    pub instances: Vec<NatInstance>,
}

/// The nft script that makes `table` hold exactly the rules of `networks` (or removes it).
pub fn script(table: &str, networks: &[NatNetwork]) -> String {
    // Creating before deleting makes the delete safe when the table does not exist yet.
    let mut s = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    if networks.is_empty() {
        return s;
    }
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!("table inet {table} {{"));
    let dnat: Vec<(u16, String, Ipv4Addr, u16)> = networks
        .iter()
        .flat_map(|n| &n.instances)
        .flat_map(|i| {
            i.published
                .iter()
                .map(|(h, p, proto)| (*h, proto.clone(), i.ip, *p))
        })
        .collect();
    for (chain, hook, prio) in [
        ("prerouting", "prerouting", "dstnat"),
        ("output", "output", "-100"),
    ] {
        line(format!("  chain {chain} {{"));
        line(format!(
            "    type nat hook {hook} priority {prio}; policy accept;"
        ));
        for (h, proto, ip, p) in &dnat {
            line(format!(
                "    fib daddr type local {proto} dport {h} dnat ip to {ip}:{p}"
            ));
        }
        line("  }".into());
    }
    line("  chain postrouting {".into());
    line("    type nat hook postrouting priority srcnat; policy accept;".into());
    for (_, _, ip, _) in &dnat {
        // Published ports reached from the host itself (127.0.0.1) need a source it can answer.
        line(format!("    ip saddr 127.0.0.0/8 ip daddr {ip} masquerade"));
    }
    for n in networks.iter().filter(|n| n.allow_outside) {
        line(format!(
            "    ip saddr {} ip daddr != {} masquerade",
            n.subnet, n.subnet
        ));
    }
    line("  }".into());
    line("  chain forward {".into());
    line("    type filter hook forward priority filter; policy accept;".into());
    let bridges: Vec<&str> = networks.iter().map(|n| n.bridge.as_str()).collect();
    let subnets: Vec<String> = networks.iter().map(|n| n.subnet.to_string()).collect();
    if !bridges.is_empty() {
        let set = |v: &[String]| format!("{{ {} }}", v.join(", "));
        let quoted: Vec<String> = bridges.iter().map(|b| format!("\"{b}\"")).collect();
        line(format!(
            "    oifname {} ct state established,related accept",
            set(&quoted)
        ));
        for b in &bridges {
            line(format!("    iifname \"{b}\" oifname \"{b}\" accept"));
        }
        // A network across nodes: its instances elsewhere (other slices) in both directions.
        for n in networks.iter().filter(|n| n.spans_nodes) {
            line(format!(
                "    iifname \"{}\" ip daddr {} accept",
                n.bridge, n.subnet
            ));
            line(format!(
                "    ip saddr {} oifname \"{}\" ip daddr {} accept",
                n.subnet, n.bridge, n.subnet
            ));
        }
        // Between networks: what the source allows and the destination exposes (the pairs
        // arrive checked against the destination's exposed ports).
        for n in networks {
            for i in &n.instances {
                for (peer, p) in &i.allowed {
                    line(format!(
                        "    iifname \"{}\" ip saddr {} ip daddr {peer} {} accept",
                        n.bridge,
                        i.ip,
                        p.nft()
                    ));
                }
            }
        }
        // From outside every network: the exposed ports.
        for n in networks {
            for i in &n.instances {
                for p in &i.exposed {
                    line(format!(
                        "    iifname != {} oifname \"{}\" ip daddr {} {} accept",
                        set(&quoted),
                        n.bridge,
                        i.ip,
                        p.nft()
                    ));
                }
            }
        }
        line(format!("    oifname {} drop", set(&quoted)));
        for n in networks {
            line(format!(
                "    iifname \"{}\" ip daddr {} drop",
                n.bridge,
                set(&subnets)
            ));
            line(format!(
                "    iifname \"{}\" {}",
                n.bridge,
                if n.allow_outside { "accept" } else { "drop" }
            ));
        }
    }
    line("  }".into());
    // From instances to the host: their network's resolver on its gateway, and replies; no
    // other service of the host (SSH, aosd's own ports, another network's gateway).
    line("  chain host_in {".into());
    line("    type filter hook input priority filter; policy accept;".into());
    if !bridges.is_empty() {
        let quoted: Vec<String> = bridges.iter().map(|b| format!("\"{b}\"")).collect();
        let set = format!("{{ {} }}", quoted.join(", "));
        line(format!(
            "    iifname {set} ct state established,related accept"
        ));
        for n in networks {
            let gw = n.gateway;
            line(format!(
                "    iifname \"{}\" ip daddr {gw} meta l4proto {{ tcp, udp }} th dport 53 accept",
                n.bridge
            ));
        }
        line(format!("    iifname {set} drop"));
    }
    line("  }".into());
    // From the host itself: root (aosd's probes, the administrator) reaches every port; other
    // users reach what instances expose and the ports they publish, nothing else.
    line("  chain host_out {".into());
    line("    type filter hook output priority filter; policy accept;".into());
    if !bridges.is_empty() {
        let quoted: Vec<String> = bridges.iter().map(|b| format!("\"{b}\"")).collect();
        let set = format!("{{ {} }}", quoted.join(", "));
        line(format!(
            "    oifname {set} ct state established,related accept"
        ));
        line(format!("    oifname {set} meta skuid 0 accept"));
        line(format!("    oifname {set} ct status dnat accept"));
        for n in networks {
            for i in &n.instances {
                for p in &i.exposed {
                    line(format!(
                        "    oifname \"{}\" ip daddr {} {} accept",
                        n.bridge,
                        i.ip,
                        p.nft()
                    ));
                }
            }
        }
        line(format!("    oifname {set} drop"));
    }
    line("  }".into());
    line("}".into());
    s
}

/// Applies the script with one run of `nft`.
pub fn sync(table: &str, networks: &[NatNetwork]) -> Result<(), NetError> {
    let text = script(table, networks);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Io {
            what: "failed to run nft (install nftables)".into(),
            source: e,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| NetError::Io {
        what: "nft did not finish".into(),
        source: e,
    })?;
    if !out.status.success() {
        return Err(NetError::Firewall(format!(
            "nft refused the rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if networks.iter().any(|n| n.allow_outside) {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    }
    for n in networks {
        if n.instances.iter().any(|i| !i.published.is_empty()) {
            // 127.0.0.1 may leave through this bridge (after DNAT and masquerade) only so.
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv4/conf/{}/route_localnet", n.bridge),
                "1",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(p: u16, proto: &str) -> Ports {
        Ports {
            first: p,
            last: p,
            proto: proto.into(),
        }
    }

    #[test]
    fn the_table_masquerades_open_networks_fences_closed_ones_and_opens_only_what_is_declared() {
        let web = NatInstance {
            ip: Ipv4Addr::new(172, 17, 0, 2),
            exposed: vec![ports(8080, "tcp")],
            allowed: vec![],
            published: vec![(18080, 8080, "tcp".into())],
        };
        let client = NatInstance {
            ip: Ipv4Addr::new(172, 18, 0, 2),
            exposed: vec![],
            allowed: vec![(web.ip, ports(8080, "tcp"))],
            published: vec![],
        };
        let nets = [
            NatNetwork {
                subnet: Cidr::parse("172.17.0.0/16").unwrap(),
                gateway: Ipv4Addr::new(172, 17, 0, 1),
                spans_nodes: false,
                bridge: "ab1".into(),
                allow_outside: true,
                instances: vec![web],
            },
            NatNetwork {
                subnet: Cidr::parse("172.18.0.0/16").unwrap(),
                gateway: Ipv4Addr::new(172, 18, 0, 1),
                spans_nodes: false,
                bridge: "ab2".into(),
                allow_outside: false,
                instances: vec![client],
            },
        ];
        let s = script("aosd_x", &nets);
        assert!(s.starts_with("table inet aosd_x {}\ndelete table inet aosd_x\n"));
        assert!(s.contains("ip saddr 172.17.0.0/16 ip daddr != 172.17.0.0/16 masquerade"));
        assert!(!s.contains("172.18.0.0/16 masquerade"));
        assert!(s.contains(
            "iifname != { \"ab1\", \"ab2\" } oifname \"ab1\" ip daddr 172.17.0.2 tcp dport 8080 accept"
        ));
        assert!(s.contains(
            "iifname \"ab2\" ip saddr 172.18.0.2 ip daddr 172.17.0.2 tcp dport 8080 accept"
        ));
        assert!(s.contains("fib daddr type local tcp dport 18080 dnat ip to 172.17.0.2:8080"));
        assert!(s.contains("iifname \"ab2\" drop"));
        // Instances reach the host only for DNS on their gateway.
        let input = &s[s.find("chain host_in").unwrap()..s.find("chain host_out").unwrap()];
        assert!(
            input.contains(
                "iifname \"ab1\" ip daddr 172.17.0.1 meta l4proto { tcp, udp } th dport 53 accept"
            ),
            "{input}"
        );
        assert!(
            input.contains("iifname { \"ab1\", \"ab2\" } drop"),
            "{input}"
        );
        // The host's other users reach exposed ports only; root reaches all.
        let output = &s[s.find("chain host_out").unwrap()..];
        assert!(output.contains("meta skuid 0 accept"), "{output}");
        assert!(output.contains("oifname \"ab1\" ip daddr 172.17.0.2 tcp dport 8080 accept"));
        assert!(
            output.find("tcp dport 8080 accept").unwrap()
                < output.find("oifname { \"ab1\", \"ab2\" } drop").unwrap()
        );
        assert!(s.contains("iifname \"ab1\" accept"));
        // Accepts come before the drops they make exceptions to.
        let accept = s.find("tcp dport 8080 accept").unwrap();
        let drop = s.find("oifname { \"ab1\", \"ab2\" } drop").unwrap();
        assert!(accept < drop, "{s}");
        assert_eq!(
            script("aosd_x", &[]),
            "table inet aosd_x {}\ndelete table inet aosd_x\n"
        );
        assert!(
            !s.contains("ip saddr 172.17.0.0/16 oifname"),
            "no slices on a node alone"
        );
    }

    /// A network across nodes: this node has 172.19.16.0/20 of it.
    fn spanning() -> NatNetwork {
        NatNetwork {
            subnet: Cidr::parse("172.19.0.0/16").unwrap(),
            gateway: Ipv4Addr::new(172, 19, 16, 1),
            spans_nodes: true,
            bridge: "ab3".into(),
            allow_outside: false,
            instances: vec![],
        }
    }

    #[test]
    fn a_network_across_nodes_passes_between_its_slices_and_serves_dns_on_this_nodes_gateway() {
        let s = script("aosd_x", &[spanning()]);
        let out = s
            .find("iifname \"ab3\" ip daddr 172.19.0.0/16 accept")
            .unwrap();
        let fence = s
            .find("iifname \"ab3\" ip daddr { 172.19.0.0/16 } drop")
            .unwrap();
        assert!(out < fence, "{s}");
        let inbound = s
            .find("ip saddr 172.19.0.0/16 oifname \"ab3\" ip daddr 172.19.0.0/16 accept")
            .unwrap();
        assert!(inbound < s.find("oifname { \"ab3\" } drop").unwrap(), "{s}");
        assert!(
            s.contains("iifname \"ab3\" ip daddr 172.19.16.1 meta l4proto"),
            "{s}"
        );
    }

    #[test]
    fn the_kernel_accepts_the_table() {
        // `nft -c` checks the script against the kernel without changing anything.
        let web = NatInstance {
            ip: Ipv4Addr::new(172, 17, 0, 2),
            exposed: vec![ports(8080, "tcp")],
            allowed: vec![(Ipv4Addr::new(172, 18, 0, 2), ports(53, "udp"))],
            published: vec![(18080, 8080, "tcp".into())],
        };
        let nets = [
            NatNetwork {
                subnet: Cidr::parse("172.17.0.0/16").unwrap(),
                gateway: Ipv4Addr::new(172, 17, 0, 1),
                spans_nodes: false,
                bridge: "ab1".into(),
                allow_outside: true,
                instances: vec![web],
            },
            spanning(),
        ];
        let mut child = Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft runs (hack/setup.sh installs nftables)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script("aosd_check", &nets).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
