//! A network across the nodes of a unit. Each node takes a part of the network's subnet (its
//! slice, `status.slices[<node>]`, claimed inside the status write's compare-and-swap, so two
//! nodes never take the same one); its bridge takes the slice's first address and its
//! instances their addresses from it, with the slice's netmask, so that the rest of the subnet
//! is reached through the node's gateway. The other nodes' slices are routed via those nodes'
//! addresses (`Node status.address`), except where the node is on this very host (several aosd
//! on one host: their bridges' own routes already lead there).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::ipam::{self, Cidr};
use crate::NetError;

/// This node's place in a unit, for its Network controller and its attacher.
#[derive(Clone, Debug)]
pub struct Unit {
    /// This node's object name: its key in `status.slices`.
    pub node: String,
    /// A slice is the subnet's prefix plus this many bits (4: a /16 gives sixteen /20s).
    pub bits: u8,
}

/// The slice `node` holds in `slices`, if it is a part of `subnet`.
pub fn held(slices: &BTreeMap<String, String>, subnet: &Cidr, node: &str) -> Option<Cidr> {
    slices
        .get(node)
        .and_then(|s| Cidr::parse(s))
        .filter(|c| c.len >= subnet.len && subnet.contains(c.addr))
}

/// This node's slice: the one it holds, else the first one no other node holds (written into
/// `slices`).
pub fn claim(
    slices: &mut BTreeMap<String, String>,
    subnet: &Cidr,
    unit: &Unit,
) -> Result<Cidr, NetError> {
    if let Some(mine) = held(slices, subnet, &unit.node) {
        return Ok(mine);
    }
    let len = subnet.len.saturating_add(unit.bits);
    let taken: Vec<Cidr> = slices
        .iter()
        .filter(|(n, _)| **n != unit.node)
        .filter_map(|(_, s)| Cidr::parse(s))
        .collect();
    let slice = ipam::choose_slice(subnet, len, &taken).ok_or_else(|| {
        NetError::NoSlice(format!(
            "{subnet} has no free /{len} left for node {} ({} held by other nodes; \
             network.node_slice_bits is {})",
            unit.node,
            taken.len(),
            unit.bits
        ))
    })?;
    slices.insert(unit.node.clone(), slice.to_string());
    Ok(slice)
}

/// Which other nodes' slices this node must route, and through which address; and the
/// nodes it cannot route to (they report no address).
pub fn routes(
    slices: &BTreeMap<String, String>,
    me: &str,
    addresses: &BTreeMap<String, Ipv4Addr>,
    local: &[Ipv4Addr],
) -> (Vec<(Cidr, Ipv4Addr)>, Vec<String>) {
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for (node, slice) in slices.iter().filter(|(n, _)| *n != me) {
        let Some(slice) = Cidr::parse(slice) else {
            continue;
        };
        match addresses.get(node) {
            None => unknown.push(node.clone()),
            Some(a) if local.contains(a) => {}
            Some(a) => wanted.push((slice, *a)),
        }
    }
    (wanted, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(node: &str) -> Unit {
        Unit {
            node: node.into(),
            bits: 4,
        }
    }

    #[test]
    fn nodes_claim_distinct_slices_and_keep_theirs() {
        let subnet = Cidr::parse("172.20.0.0/16").unwrap();
        let mut slices = BTreeMap::new();
        let a = claim(&mut slices, &subnet, &unit("a")).unwrap();
        let b = claim(&mut slices, &subnet, &unit("b")).unwrap();
        assert_eq!(a.to_string(), "172.20.0.0/20");
        assert_eq!(b.to_string(), "172.20.16.0/20");
        assert_eq!(claim(&mut slices, &subnet, &unit("a")).unwrap(), a);
        // A slice outside the subnet (a subnet changed by hand) is replaced.
        slices.insert("c".into(), "10.0.0.0/20".into());
        let c = claim(&mut slices, &subnet, &unit("c")).unwrap();
        assert_eq!(c.to_string(), "172.20.32.0/20");
        let small = Cidr::parse("10.1.0.0/29").unwrap();
        let e = claim(&mut BTreeMap::new(), &small, &unit("a")).unwrap_err();
        assert!(e.to_string().contains("no free /33"), "{e}");
    }

    #[test]
    fn routes_go_to_other_nodes_on_other_hosts_and_name_those_without_an_address() {
        let slices: BTreeMap<String, String> = [
            ("a", "172.20.0.0/20"),
            ("b", "172.20.16.0/20"),
            ("c", "172.20.32.0/20"),
            ("d", "172.20.48.0/20"),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
        let addresses: BTreeMap<String, Ipv4Addr> = [
            ("a", [10, 0, 0, 1]),
            ("b", [10, 0, 0, 2]),
            ("c", [10, 0, 0, 1]),
        ]
        .into_iter()
        .map(|(n, a)| (n.to_string(), a.into()))
        .collect();
        let local = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::LOCALHOST];
        let (wanted, unknown) = routes(&slices, "a", &addresses, &local);
        assert_eq!(
            wanted,
            vec![(
                Cidr::parse("172.20.16.0/20").unwrap(),
                Ipv4Addr::new(10, 0, 0, 2)
            )],
            "c shares this host: its bridge is routed already"
        );
        assert_eq!(unknown, vec!["d".to_string()]);
    }
}
