//! Address management: a subnet per network from the pools (172.17.0.0/16 … 172.31.0.0/16 by
//! default), never one that overlaps another network or a route of the host; and one address
//! per instance from its network's subnet (the gateway takes the first).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 network: address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, len: u8) -> Cidr {
        let mask = Self::mask(len);
        Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        }
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len as u32)
        }
    }

    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, l) = s.split_once('/')?;
        Some(Cidr::new(
            a.parse().ok()?,
            l.parse().ok().filter(|l| *l <= 32)?,
        ))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        let len = self.len.min(other.len);
        let m = Self::mask(len);
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The first host address: the gateway on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.addr) | !Self::mask(self.len)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The default pools: 172.17.0.0/16 to 172.31.0.0/16.
pub fn default_pool() -> Vec<Cidr> {
    (17..=31)
        .map(|b| Cidr::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .collect()
}

/// The first pool subnet that overlaps neither a subnet in use nor a host route.
pub fn choose_subnet(pool: &[Cidr], used: &[Cidr], host_routes: &[Cidr]) -> Option<Cidr> {
    pool.iter()
        .find(|c| {
            !used.iter().any(|u| u.overlaps(c))
                && !host_routes
                    .iter()
                    .filter(|r| r.len > 0)
                    .any(|r| r.overlaps(c))
        })
        .copied()
}

/// The first part of `subnet` with prefix `len` that overlaps none of `taken` (the parts of the
/// other nodes of a unit).
pub fn choose_slice(subnet: &Cidr, len: u8, taken: &[Cidr]) -> Option<Cidr> {
    if len < subnet.len || len > 30 {
        return None;
    }
    let step = 1u64 << (32 - len as u32);
    let count = 1u64 << (len - subnet.len) as u32;
    (0..count)
        .map(|i| {
            Cidr::new(
                Ipv4Addr::from(u32::from(subnet.addr) + (i * step) as u32),
                len,
            )
        })
        .find(|c| !taken.iter().any(|t| t.overlaps(c)))
}

/// The lowest free host address of `subnet` after the gateway.
pub fn allocate(subnet: &Cidr, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.gateway()) + 1;
    (first..subnet.broadcast())
        .map(Ipv4Addr::from)
        .find(|ip| !taken.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn subnets_skip_those_in_use_and_those_the_host_routes() {
        let pool = default_pool();
        assert_eq!(choose_subnet(&pool, &[], &[]), Some(c("172.17.0.0/16")));
        let host = [c("172.17.5.0/24"), c("0.0.0.0/0"), c("10.0.0.0/8")];
        assert_eq!(choose_subnet(&pool, &[], &host), Some(c("172.18.0.0/16")));
        let used = [c("172.18.0.0/16")];
        assert_eq!(choose_subnet(&pool, &used, &host), Some(c("172.19.0.0/16")));
        let all: Vec<Cidr> = pool.clone();
        assert_eq!(choose_subnet(&pool, &all, &[]), None);
    }

    #[test]
    fn a_node_takes_the_first_part_of_the_subnet_no_other_node_holds() {
        let s = c("172.20.0.0/16");
        assert_eq!(choose_slice(&s, 20, &[]), Some(c("172.20.0.0/20")));
        let taken = [c("172.20.0.0/20"), c("172.20.32.0/20")];
        assert_eq!(choose_slice(&s, 20, &taken), Some(c("172.20.16.0/20")));
        let all: Vec<Cidr> = (0..16)
            .map(|i| c(&format!("172.20.{}.0/20", i * 16)))
            .collect();
        assert_eq!(choose_slice(&s, 20, &all), None, "sixteen nodes fill a /16");
        assert_eq!(
            choose_slice(&c("10.0.0.0/24"), 31, &[]),
            None,
            "no room for hosts"
        );
        assert_eq!(
            choose_slice(&c("10.0.0.0/24"), 23, &[]),
            None,
            "wider than the subnet"
        );
        assert_eq!(
            choose_slice(&c("10.0.0.0/24"), 24, &[]),
            Some(c("10.0.0.0/24"))
        );
    }

    #[test]
    fn addresses_start_after_the_gateway_and_are_not_reused() {
        let s = c("172.20.0.0/30");
        assert_eq!(s.gateway(), Ipv4Addr::new(172, 20, 0, 1));
        let mut taken = BTreeSet::new();
        let a = allocate(&s, &taken).unwrap();
        assert_eq!(a, Ipv4Addr::new(172, 20, 0, 2));
        taken.insert(a);
        assert_eq!(allocate(&s, &taken), None, "a /30 holds one instance");
        assert!(c("172.20.0.0/16").contains(Ipv4Addr::new(172, 20, 9, 9)));
        assert_eq!(c("172.20.3.4/16").to_string(), "172.20.0.0/16");
    }
}
