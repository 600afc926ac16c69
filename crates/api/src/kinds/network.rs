//! Network: one per network id; a bridge, a subnet and the instances attached to it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{impl_status, CommonStatus, FieldError, Spec};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// `a.b.c.d/len`; chosen from the pools when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
    /// Whether instances may reach addresses outside the unit.
    #[serde(default = "yes")]
    pub allow_outside: bool,
}

#[cfg(test)]
mod gateway_tests {
    use super::*;

    #[test]
    fn a_nodes_gateway_is_the_first_address_of_its_slice_and_a_lone_nodes_the_networks() {
        let s = NetworkStatus {
            gateway: Some("172.20.0.1".into()),
            slices: [("b".to_string(), "172.20.16.0/20".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(s.gateway_on(Some("b")).as_deref(), Some("172.20.16.1"));
        assert_eq!(s.gateway_on(Some("c")), None, "no slice yet");
        assert_eq!(s.gateway_on(None).as_deref(), Some("172.20.0.1"));
    }
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Instance name → address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocations: BTreeMap<String, String>,
    /// In a unit: node object name → that node's part of the subnet (`a.b.c.d/len`). Its
    /// bridge takes the part's first address and its instances their addresses from it;
    /// the other parts are reached through the node's gateway.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slices: BTreeMap<String, String>,
    /// In a unit: node object name → that node's own conditions; the top-level ones sum
    /// them up (`NetworkStatus::set_condition_on`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, crate::kinds::network_nodes::NetworkOnNode>,
}
impl_status!(NetworkStatus);

impl NetworkStatus {
    /// The gateway (and resolver) of the network's instances on `node`: in a unit the first
    /// address of that node's slice, on a node alone the network's gateway.
    pub fn gateway_on(&self, node: Option<&str>) -> Option<String> {
        let Some(node) = node else {
            return self.gateway.clone();
        };
        let (addr, _) = self.slices.get(node)?.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        Some(Ipv4Addr::from(u32::from(addr).wrapping_add(1)).to_string())
    }
}

/// Parses `port[-port][/tcp|udp]` into (first, last, proto).
pub fn parse_port_spec(s: &str) -> Result<(u16, u16, &str), String> {
    let (ports, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (s, "tcp"),
    };
    if proto != "tcp" && proto != "udp" {
        return Err(format!("{s:?}: protocol must be tcp or udp"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?}: {p:?} is not a port number (1-65535)"))
    };
    let (a, b) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if a > b {
        return Err(format!("{s:?}: range start is after its end"));
    }
    Ok((a, b, proto))
}

/// Parses `a.b.c.d/len`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not of the form a.b.c.d/len"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .ok_or_else(|| format!("prefix length {len:?} must be between 8 and 30"))?;
    Ok((addr, len))
}

/// The ranges a network's subnet may not lie in: they mean something else to every host.
pub fn reserved_range(addr: Ipv4Addr) -> Option<&'static str> {
    let o = addr.octets();
    if addr.is_loopback() {
        Some("loopback (127.0.0.0/8)")
    } else if addr.is_link_local() {
        Some("link-local (169.254.0.0/16)")
    } else if addr.is_multicast() {
        Some("multicast (224.0.0.0/4)")
    } else if o[0] == 0 {
        Some("\"this network\" (0.0.0.0/8)")
    } else if o[0] >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else {
        None
    }
}

impl Spec for NetworkSpec {
    const KIND: &'static str = "Network";
    type Status = NetworkStatus;

    fn validate_update(&self, old: &Self, old_status: &Self::Status, errors: &mut Vec<FieldError>) {
        // The subnet in use (chosen, or the one asked for) stays: a bridge, addresses and rules
        // hang on it. A new one needs a new network.
        let in_use = old_status.subnet.as_ref().or(old.subnet.as_ref());
        if let (Some(new), Some(cur)) = (&self.subnet, in_use) {
            if new != cur {
                errors.push(FieldError::new(
                    "spec.subnet",
                    format!(
                        "cannot change from {cur} to {new}: delete the network and create it again"
                    ),
                ));
            }
        }
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(s) = &self.subnet {
            match parse_cidr(s) {
                Err(e) => errors.push(FieldError::new("spec.subnet", e)),
                Ok((addr, _)) => {
                    if let Some(why) = reserved_range(addr) {
                        errors.push(FieldError::new(
                            "spec.subnet",
                            format!("{s} is in the {why} range, which no network may take"),
                        ));
                    }
                }
            }
        }
        if let Some(v) = self.vlan_id {
            if !(1..=4094).contains(&v) {
                errors.push(FieldError::new("spec.vlanId", "must be between 1 and 4094"));
            }
        }
        for (i, d) in self.dns_servers.iter().enumerate() {
            if d.parse::<std::net::IpAddr>().is_err() {
                errors.push(FieldError::new(
                    format!("spec.dnsServers[{i}]"),
                    format!("{d:?} is not an IP address"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_accept_ranges_and_protocols() {
        assert_eq!(parse_port_spec("80").unwrap(), (80, 80, "tcp"));
        assert_eq!(parse_port_spec("53/udp").unwrap(), (53, 53, "udp"));
        assert_eq!(
            parse_port_spec("8000-8010/tcp").unwrap(),
            (8000, 8010, "tcp")
        );
        for bad in ["0", "x", "80/icmp", "90-80", "70000"] {
            assert!(parse_port_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_need_an_address_and_a_sane_prefix() {
        assert!(parse_cidr("172.17.0.0/16").is_ok());
        assert!(parse_cidr("172.17.0.0").is_err());
        assert!(parse_cidr("172.17.0.0/2").is_err());
        assert!(parse_cidr("300.1.1.1/16").is_err());
    }
}
