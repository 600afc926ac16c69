//! The firewall side, in one nftables table of ours (nothing else is touched): masquerade of
//! each network that may reach the outside, and a drop of forwarded traffic leaving a network
//! that may not. The whole table is rewritten in one atomic `nft -f` run whenever the set of
//! networks changes.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::ipam::Cidr;
use crate::NetError;

/// One network as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatNetwork {
    pub subnet: Cidr,
    pub bridge: String,
    pub allow_outside: bool,
}

/// The nft script that makes `table` hold exactly the rules of `networks` (or removes it).
pub fn script(table: &str, networks: &[NatNetwork]) -> String {
    // Creating before deleting makes the delete safe when the table does not exist yet.
    let mut s = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    if networks.is_empty() {
        return s;
    }
    s.push_str(&format!("table inet {table} {{\n"));
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    for n in networks.iter().filter(|n| n.allow_outside) {
        s.push_str(&format!(
            "    ip saddr {} ip daddr != {} masquerade\n",
            n.subnet, n.subnet
        ));
    }
    s.push_str(
        "  }\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
    );
    for n in networks {
        if n.allow_outside {
            s.push_str(&format!("    iifname \"{}\" accept\n", n.bridge));
            s.push_str(&format!(
                "    oifname \"{}\" ct state established,related accept\n",
                n.bridge
            ));
        } else {
            s.push_str(&format!(
                "    iifname \"{}\" oifname != \"{}\" drop\n",
                n.bridge, n.bridge
            ));
        }
    }
    s.push_str("  }\n}\n");
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_masquerades_open_networks_and_fences_closed_ones() {
        let nets = [
            NatNetwork {
                subnet: Cidr::parse("172.17.0.0/16").unwrap(),
                bridge: "ab1".into(),
                allow_outside: true,
            },
            NatNetwork {
                subnet: Cidr::parse("172.18.0.0/16").unwrap(),
                bridge: "ab2".into(),
                allow_outside: false,
            },
        ];
        let s = script("aosd_x", &nets);
        assert!(s.starts_with("table inet aosd_x {}\ndelete table inet aosd_x\n"));
        assert!(s.contains("ip saddr 172.17.0.0/16 ip daddr != 172.17.0.0/16 masquerade"));
        assert!(!s.contains("172.18.0.0/16 masquerade"));
        assert!(s.contains("iifname \"ab2\" oifname != \"ab2\" drop"));
        assert_eq!(
            script("aosd_x", &[]),
            "table inet aosd_x {}\ndelete table inet aosd_x\n"
        );
    }
}
