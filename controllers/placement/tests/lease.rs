//! Leader election through a lease in the store: one leader among contenders; when it stops
//! renewing, another takes over after the lease duration, and not before.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_placement_controller::lease::{run, LeaseConfig};
use aos_store::{Backend, Embedded, EmbeddedOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_millis(600);

fn contender(
    backend: &Arc<dyn Backend>,
    holder: &str,
) -> (watch::Receiver<bool>, CancellationToken) {
    let (tx, rx) = watch::channel(false);
    let stop = CancellationToken::new();
    let cfg = LeaseConfig {
        name: "placement".into(),
        holder: holder.into(),
        duration: LEASE,
    };
    tokio::spawn(run(backend.clone(), cfg, tx, stop.clone()));
    (rx, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_contender_leads_and_another_takes_over_only_after_the_lease_lapses() {
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
    let contenders: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|h| contender(&backend, h))
        .collect();
    tokio::time::sleep(LEASE).await;
    let leading = |cs: &[(watch::Receiver<bool>, CancellationToken)]| {
        cs.iter()
            .enumerate()
            .filter(|(_, (rx, _))| *rx.borrow())
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    // Over several renewals, always exactly one.
    let mut first = None;
    for _ in 0..10 {
        let now = leading(&contenders);
        assert_eq!(now.len(), 1, "exactly one leader: {now:?}");
        assert_eq!(*first.get_or_insert(now[0]), now[0], "the leader stays");
        tokio::time::sleep(LEASE / 4).await;
    }
    let old = first.unwrap();
    let holder = backend.get("Lease", "placement").await.unwrap().spec["holder"].clone();
    assert_eq!(holder, ["a", "b", "c"][old]);

    // The leader stops (a crash: it renews no more).
    contenders[old].1.cancel();
    let stopped = Instant::now();
    let next = loop {
        let now: Vec<_> = leading(&contenders)
            .into_iter()
            .filter(|i| *i != old)
            .collect();
        if let [i] = now[..] {
            break i;
        }
        assert!(now.len() < 2, "two leaders: {now:?}");
        assert!(stopped.elapsed() < LEASE * 4, "no one took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        stopped.elapsed() >= LEASE / 2,
        "taken over after {:?}: the lease had not lapsed",
        stopped.elapsed()
    );
    let holder = backend.get("Lease", "placement").await.unwrap().spec["holder"].clone();
    assert_eq!(holder, ["a", "b", "c"][next]);
    for (_, stop) in &contenders {
        stop.cancel();
    }
}
