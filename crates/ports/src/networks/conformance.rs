//! What every `Networks` must do: the attacher of the Network controller passes it against
//! real namespaces and links (controllers/network/tests/ports.rs), and so does
//! [`super::fake::FakeNetworks`].
// A test suite (run by tests of each implementation): a failed unwrap is a failed case.
#![allow(clippy::unwrap_used)]

use super::{Networks, Shaping};

/// Runs every case with `network`, a network that takes instances, and `missing`, one that
/// does not exist; instance names start with `prefix`.
pub async fn run(n: &dyn Networks, network: &str, missing: &str, prefix: &str) {
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let first = n.attach(&a, network, Shaping::default()).await.unwrap();
    let again = n.attach(&a, network, Shaping::default()).await.unwrap();
    assert_eq!(first, again, "attaching again changes nothing");
    assert_eq!(n.netns_path(&a), n.netns_path(&a));
    assert_ne!(n.netns_path(&a), n.netns_path(&b));
    let other = n.attach(&b, network, Shaping::default()).await.unwrap();
    assert_ne!(first.ip, other.ip, "two instances, two addresses");
    assert_eq!(first.gateway, other.gateway);
    assert!(
        n.counters(&a).is_some(),
        "an attached instance has counters"
    );
    let e = n
        .attach(&format!("{prefix}c"), missing, Shaping::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.reason,
        aos_api::condition::reason::NETWORK_NOT_READY,
        "{e}"
    );
    for i in [&a, &b] {
        n.detach(i, network).await.unwrap();
        n.detach(i, network).await.unwrap();
        assert!(n.counters(i).is_none(), "a detached instance has none");
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeNetworks;

    #[tokio::test]
    async fn the_fake_passes_the_conformance_suite() {
        let f = FakeNetworks::new();
        f.add("net");
        super::run(&f, "net", "absent", "t-").await;
    }
}
