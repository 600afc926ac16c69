//! Routes to the other nodes' slices of a network, made in a network namespace of the test's own
//! (nothing of the host's routing is touched, and the namespace goes with the thread): added
//! via each node's address under aosd's protocol number, replaced when the set changes, removed
//! when it empties; routes of others (another protocol) are left alone; a gateway no link
//! reaches is reported, not an error. And a bridge whose part of the subnet changed keeps only
//! the new gateway address.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::process::Command;

use aos_network_controller::ipam::Cidr;
use aos_network_controller::netlink::{Links, ROUTE_PROTOCOL};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ours() -> String {
    ip(&["-4", "route", "show", "proto", &ROUTE_PROTOCOL.to_string()])
}

fn to(dst: &str, via: [u8; 4]) -> (Cidr, Ipv4Addr) {
    (Cidr::parse(dst).unwrap(), via.into())
}

async fn routes_in_this_namespace() {
    // A link to the other nodes: they are 10.77.0.2 and 10.77.0.3 on it.
    ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
    ]);
    ip(&["addr", "add", "10.77.0.1/24", "dev", "uplink0"]);
    ip(&["link", "set", "uplink0", "up"]);
    ip(&["link", "set", "uplink1", "up"]);
    let links = Links::new().unwrap();
    assert!(links
        .local_addresses()
        .await
        .unwrap()
        .contains(&Ipv4Addr::new(10, 77, 0, 1)));
    let within = Cidr::parse("172.30.0.0/16").unwrap();

    let failed = links
        .sync_routes(&within, &[to("172.30.16.0/20", [10, 77, 0, 2])])
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        ours().contains("172.30.16.0/20 via 10.77.0.2"),
        "{}",
        ours()
    );

    // Someone else's route inside the subnet: not ours to touch.
    ip(&[
        "route",
        "add",
        "172.30.48.0/20",
        "via",
        "10.77.0.9",
        "proto",
        "static",
    ]);
    // A node moved to another address, another node joined.
    let wanted = [
        to("172.30.16.0/20", [10, 77, 0, 3]),
        to("172.30.32.0/20", [10, 77, 0, 2]),
    ];
    let failed = links.sync_routes(&within, &wanted).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let now = ours();
    assert!(now.contains("172.30.16.0/20 via 10.77.0.3"), "{now}");
    assert!(now.contains("172.30.32.0/20 via 10.77.0.2"), "{now}");
    assert_eq!(now.lines().count(), 2, "{now}");
    // Again: nothing to do.
    assert!(links
        .sync_routes(&within, &wanted)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(ours(), now);

    // A gateway no link reaches: said, and the rest still done.
    let failed = links
        .sync_routes(
            &within,
            &[
                to("172.30.64.0/20", [192, 0, 2, 1]),
                to("172.30.16.0/20", [10, 77, 0, 3]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("172.30.64.0/20 via 192.0.2.1"),
        "{failed:?}"
    );
    let now = ours();
    assert!(now.contains("172.30.16.0/20 via 10.77.0.3"), "{now}");
    assert!(!now.contains("172.30.32.0/20"), "{now}");

    // The network goes: all of ours go, the other route stays.
    assert!(links.sync_routes(&within, &[]).await.unwrap().is_empty());
    assert_eq!(ours(), "");
    assert!(ip(&["-4", "route"]).contains("172.30.48.0/20 via 10.77.0.9"));
}

/// Runs `test` on a thread in a network namespace of its own (which goes with the thread).
fn in_own_netns<Fut: std::future::Future<Output = ()> + 'static>(test: fn() -> Fut) {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test());
    })
    .join()
    .unwrap();
}

#[test]
fn routes_to_other_nodes_slices_follow_the_wanted_set_and_leave_others_alone() {
    in_own_netns(routes_in_this_namespace);
}

async fn bridge_in_this_namespace() {
    let links = Links::new().unwrap();
    // A node of its own held the whole subnet; in a unit it takes a slice of it.
    links
        .ensure_bridge("aosbr-t", &Cidr::parse("172.31.0.0/24").unwrap())
        .await
        .unwrap();
    let slice = Cidr::parse("172.31.0.64/26").unwrap();
    links.ensure_bridge("aosbr-t", &slice).await.unwrap();
    links.ensure_bridge("aosbr-t", &slice).await.unwrap();
    let addrs = ip(&["-4", "-o", "addr", "show", "dev", "aosbr-t"]);
    let held: Vec<&str> = addrs
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(held, ["172.31.0.65/26"], "{addrs}");
}

#[test]
fn a_bridge_whose_part_changed_keeps_only_the_new_gateway_address() {
    in_own_netns(bridge_in_this_namespace);
}
