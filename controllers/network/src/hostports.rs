//! Which host ports an instance may publish (`spec.network.hostPorts`): only inside the node's
//! range (`network.host_ports`, 1024-65535 by default, so never SSH's 22), only ports no other
//! attached instance publishes, and only ports nothing on the host listens on (a DNAT rule
//! would take them over from it). Checked when the instance attaches, under one lock, so that
//! two instances cannot both take a port.

use aos_api::{InstanceSpec, Object};

/// A port range `first-last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> Option<PortRange> {
        let (a, b) = s.split_once('-')?;
        let (first, last) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (first <= last && first > 0).then_some(PortRange { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

fn published(i: &Object<InstanceSpec>) -> Vec<(u16, String)> {
    i.spec
        .network
        .as_ref()
        .map(|n| {
            n.host_ports
                .iter()
                .filter_map(|h| aos_api::parse_host_port(h).ok())
                .map(|(h, _, proto)| (h, proto.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Why `me` may not publish its host ports, if it may not. `others` are the node's other
/// Instances; one holds a port when it publishes it and is attached (has an address).
pub fn check(
    me: &Object<InstanceSpec>,
    others: &[Object<InstanceSpec>],
    range: PortRange,
    listening: &dyn Fn(u16, &str) -> bool,
) -> Result<(), String> {
    for (port, proto) in published(me) {
        if port < range.first || port > range.last {
            return Err(format!(
                "host port {port}/{proto} is outside the node's range {range} (network.host_ports)"
            ));
        }
        if let Some(o) = others.iter().find(|o| {
            o.name() != me.name()
                && o.status.ip.is_some()
                && o.metadata.deletion_timestamp.is_none()
                && published(o).contains(&(port, proto.clone()))
        }) {
            return Err(format!(
                "host port {port}/{proto} is published by instance {}",
                o.name()
            ));
        }
        if listening(port, &proto) {
            return Err(format!(
                "host port {port}/{proto} is in use by a service of the host"
            ));
        }
    }
    Ok(())
}

/// Whether a socket of the host listens on `port` (any address) for `proto`, from procfs.
pub fn listening(port: u16, proto: &str) -> bool {
    // TCP sockets in LISTEN (0A); UDP sockets bound (07, "closed" is how bound ones show).
    let (files, state) = match proto {
        "udp" => (["/proc/net/udp", "/proc/net/udp6"], "07"),
        _ => (["/proc/net/tcp", "/proc/net/tcp6"], "0A"),
    };
    files.iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let local_port = cols
                    .get(1)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                local_port == Some(port) && cols.get(3) == Some(&state)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str, ports: &[&str], attached: bool) -> Object<InstanceSpec> {
        let mut o: Object<InstanceSpec> = serde_json::from_value(serde_json::json!({
            "apiVersion": "aos.edge/v1alpha1", "kind": "Instance", "metadata": {"name": name},
            "spec": {"itemId": "i", "version": "1", "subjectId": "s", "index": 0,
                     "runtime": "container", "network": {"networkId": "n", "hostPorts": ports}},
        }))
        .unwrap();
        if attached {
            o.status.ip = Some("10.0.0.2".into());
        }
        o
    }

    #[test]
    fn host_ports_outside_the_range_taken_by_another_instance_or_by_the_host_are_refused() {
        let range = PortRange::parse("1024-65535").unwrap();
        let free = |_: u16, _: &str| false;
        let me = inst("a", &["8080:80"], false);
        assert!(check(&me, &[], range, &free).is_ok());
        let ssh = check(&inst("a", &["22:22"], false), &[], range, &free).unwrap_err();
        assert!(ssh.contains("outside the node's range 1024-65535"), "{ssh}");
        let held = [inst("b", &["8080:9000"], true)];
        let e = check(&me, &held, range, &free).unwrap_err();
        assert!(e.contains("published by instance b"), "{e}");
        // Another protocol, or a holder that is not attached, does not count.
        assert!(check(&inst("a", &["8080:80/udp"], false), &held, range, &free).is_ok());
        assert!(check(&me, &[inst("b", &["8080:80"], false)], range, &free).is_ok());
        let busy = |p: u16, proto: &str| p == 8080 && proto == "tcp";
        let e = check(&me, &[], range, &busy).unwrap_err();
        assert!(e.contains("in use by a service of the host"), "{e}");
    }

    #[test]
    fn a_listening_socket_of_this_process_is_seen() {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening(port, "tcp"));
        drop(l);
        assert!(!listening(port, "tcp"));
    }
}
