//! The controller runtime against the in-memory store, on a paused clock.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_api::{ItemSource, ItemSpec, LayerSpec, Object};
use aos_reconcile::{Action, Context, Controller, ControllerConfig, Reason, Reconciler};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
#[error("the host said no")]
struct HostSaidNo;

impl Reason for HostSaidNo {
    fn reason(&self) -> &'static str {
        "HostSaidNo"
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Call {
    Apply(String, i64),
    Cleanup(String),
}

type CallSender = mpsc::UnboundedSender<(Instant, Call)>;

/// A recording reconciler whose answers the test scripts per name.
#[derive(Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<(Instant, Call)>>>,
    tx: Arc<Mutex<Option<CallSender>>>,
    /// Failures still to give, per name.
    fail: Arc<Mutex<HashMap<String, u32>>>,
    fail_cleanup: Arc<Mutex<u32>>,
    /// Cleanups still to answer "not finished" (`Requeue`).
    unfinished_cleanup: Arc<Mutex<u32>>,
    action: Arc<Mutex<Option<Action>>>,
    hold: Arc<Mutex<Duration>>,
    running: Arc<Mutex<HashMap<String, usize>>>,
    overlap: Arc<AtomicUsize>,
    concurrent: Arc<AtomicUsize>,
    max_concurrent: Arc<AtomicUsize>,
    finalizer: bool,
}

impl Fake {
    fn record(&self, c: Call) {
        let now = Instant::now();
        self.calls.lock().unwrap().push((now, c.clone()));
        if let Some(tx) = &*self.tx.lock().unwrap() {
            let _ = tx.send((now, c));
        }
    }
}

impl Reconciler for Fake {
    type Kind = ItemSpec;
    type Error = HostSaidNo;

    fn finalizer(&self) -> Option<&'static str> {
        self.finalizer.then_some("aos.edge/test")
    }

    async fn apply(
        &self,
        obj: Arc<Object<ItemSpec>>,
        _: &Context<ItemSpec>,
    ) -> Result<Action, HostSaidNo> {
        let name = obj.metadata.name.clone();
        {
            let mut r = self.running.lock().unwrap();
            let n = r.entry(name.clone()).or_default();
            *n += 1;
            if *n > 1 {
                self.overlap.fetch_add(1, Ordering::SeqCst);
            }
        }
        let c = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(c, Ordering::SeqCst);
        self.record(Call::Apply(name.clone(), obj.metadata.generation));
        let hold = *self.hold.lock().unwrap();
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        self.concurrent.fetch_sub(1, Ordering::SeqCst);
        *self.running.lock().unwrap().get_mut(&name).unwrap() -= 1;
        let mut fail = self.fail.lock().unwrap();
        if let Some(n) = fail.get_mut(&name).filter(|n| **n > 0) {
            *n -= 1;
            return Err(HostSaidNo);
        }
        Ok(self.action.lock().unwrap().unwrap_or(Action::AwaitChange))
    }

    async fn cleanup(
        &self,
        obj: Arc<Object<ItemSpec>>,
        _: &Context<ItemSpec>,
    ) -> Result<Action, HostSaidNo> {
        self.record(Call::Cleanup(obj.metadata.name.clone()));
        let mut f = self.fail_cleanup.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return Err(HostSaidNo);
        }
        let mut u = self.unfinished_cleanup.lock().unwrap();
        if *u > 0 {
            *u -= 1;
            return Ok(Action::Requeue(Duration::from_secs(2)));
        }
        Ok(Action::AwaitChange)
    }
}

fn item(name: &str, version: &str) -> Object<ItemSpec> {
    Object::new(
        name,
        ItemSpec {
            item_id: "hello".into(),
            version: version.into(),
            source: ItemSource {
                registry: Some("127.0.0.1:5000/hello:1".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
}

struct Harness {
    api: Api<ItemSpec>,
    backend: Arc<dyn Backend>,
    fake: Fake,
    rx: mpsc::UnboundedReceiver<(Instant, Call)>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    waker: aos_reconcile::Waker,
}

impl Harness {
    async fn start(fake: Fake, config: ControllerConfig, before: &[Object<ItemSpec>]) -> Harness {
        Self::start_with(fake, config, before, |c| c).await
    }

    async fn start_with(
        fake: Fake,
        config: ControllerConfig,
        before: &[Object<ItemSpec>],
        wire: impl FnOnce(Controller<Fake>) -> Controller<Fake>,
    ) -> Harness {
        let backend: Arc<dyn Backend> =
            Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
        let api = Api::<ItemSpec>::new(backend.clone());
        for o in before {
            api.apply(o).await.unwrap();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *fake.tx.lock().unwrap() = Some(tx);
        let controller = wire(Controller::new(fake.clone(), backend.clone(), config));
        let waker = controller.waker();
        let stop = CancellationToken::new();
        let task = tokio::spawn(controller.run(stop.clone()));
        Harness {
            api,
            backend,
            fake,
            rx,
            stop,
            task,
            waker,
        }
    }

    async fn next_call(&mut self) -> (Instant, Call) {
        tokio::time::timeout(Duration::from_secs(3600), self.rx.recv())
            .await
            .expect("a reconcile within an hour of virtual time")
            .unwrap()
    }

    /// Asserts that nothing is reconciled for `d` of virtual time.
    async fn quiet_for(&mut self, d: Duration) {
        if let Ok(Some(c)) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!("unexpected reconcile {c:?}");
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn config() -> ControllerConfig {
    ControllerConfig {
        resync: Duration::from_secs(86400),
        ..ControllerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn existing_objects_are_reconciled_once_and_observed_generation_is_recorded() {
    let mut h = Harness::start(Fake::default(), config(), &[item("a", "1"), item("b", "1")]).await;
    let mut seen = vec![h.next_call().await.1, h.next_call().await.1];
    seen.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        seen,
        [Call::Apply("a".into(), 1), Call::Apply("b".into(), 1)]
    );
    h.quiet_for(Duration::from_secs(60)).await;
    assert_eq!(
        h.api
            .get("a")
            .await
            .unwrap()
            .status
            .common
            .observed_generation,
        1
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_spec_change_reconciles_again_but_a_status_change_does_not() {
    let mut h = Harness::start(Fake::default(), config(), &[item("a", "1")]).await;
    h.next_call().await;
    h.api
        .update_status("a", |s| s.phase = aos_api::ItemPhase::Downloading)
        .await
        .unwrap();
    h.quiet_for(Duration::from_secs(10)).await;
    h.api.apply(&item("a", "2")).await.unwrap();
    assert_eq!(h.next_call().await.1, Call::Apply("a".into(), 2));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_are_written_to_status_and_reset_on_success() {
    let fake = Fake::default();
    fake.fail.lock().unwrap().insert("a".into(), 3);
    let mut h = Harness::start(fake, config(), &[item("a", "1")]).await;
    let mut times = vec![h.next_call().await.0];
    for _ in 0..3 {
        times.push(h.next_call().await.0);
    }
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            (want * 0.9..=want * 1.1 + 0.01).contains(gap),
            "gaps {gaps:?}"
        );
    }
    // The fourth attempt succeeded: the bookkeeping is cleared.
    h.quiet_for(Duration::from_secs(30)).await;
    let s = h.api.get("a").await.unwrap().status.common;
    assert_eq!(
        (s.consecutive_failures, s.next_retry_at, s.last_error),
        (0, None, None)
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_object_shows_its_failures_retry_time_and_error_in_status() {
    let fake = Fake::default();
    fake.fail.lock().unwrap().insert("a".into(), 100);
    let mut h = Harness::start(fake, config(), &[item("a", "1")]).await;
    h.next_call().await;
    h.next_call().await;
    // Give the runtime a moment of virtual time to record the second failure.
    h.quiet_for(Duration::from_millis(500)).await;
    let s = h.api.get("a").await.unwrap().status.common;
    assert_eq!(s.consecutive_failures, 2);
    assert_eq!(
        s.last_error.as_deref(),
        Some("HostSaidNo: the host said no")
    );
    assert!(s.next_retry_at.is_some());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_key_never_runs_twice_at_once_and_concurrency_is_bounded() {
    let fake = Fake::default();
    *fake.hold.lock().unwrap() = Duration::from_secs(5);
    let cfg = ControllerConfig {
        concurrency: 2,
        ..config()
    };
    let objs: Vec<_> = (0..6).map(|i| item(&format!("o{i}"), "1")).collect();
    let mut h = Harness::start(fake, cfg, &objs).await;
    h.next_call().await;
    // Change o0..o5 repeatedly while they run.
    for v in 2..5 {
        for i in 0..6 {
            h.api
                .apply(&item(&format!("o{i}"), &v.to_string()))
                .await
                .unwrap();
        }
    }
    let mut last_gen = HashMap::new();
    while let Ok(Some((_, Call::Apply(n, g)))) =
        tokio::time::timeout(Duration::from_secs(60), h.rx.recv()).await
    {
        last_gen.insert(n, g);
    }
    assert_eq!(
        h.fake.overlap.load(Ordering::SeqCst),
        0,
        "a key ran twice at once"
    );
    assert!(h.fake.max_concurrent.load(Ordering::SeqCst) <= 2);
    for i in 0..6 {
        assert_eq!(
            last_gen.get(&format!("o{i}")),
            Some(&4),
            "o{i} ended on its last spec"
        );
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn finalizer_is_added_before_apply_and_removed_after_cleanup() {
    let fake = Fake {
        finalizer: true,
        ..Fake::default()
    };
    *fake.fail_cleanup.lock().unwrap() = 1;
    let mut h = Harness::start(fake, config(), &[item("a", "1")]).await;
    h.next_call().await;
    let o = h.api.get("a").await.unwrap();
    assert_eq!(o.metadata.finalizers, ["aos.edge/test"]);
    h.api.delete("a").await.unwrap();
    assert_eq!(h.next_call().await.1, Call::Cleanup("a".into()));
    // The first cleanup failed: the object stays, with the error, and cleanup is retried.
    let o = h.api.get("a").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert_eq!(h.next_call().await.1, Call::Cleanup("a".into()));
    h.quiet_for(Duration::from_secs(5)).await;
    assert!(
        h.api.get_opt("a").await.unwrap().is_none(),
        "the object is gone after cleanup"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cleanup_that_is_not_finished_keeps_the_finalizer_and_runs_again_after_its_delay() {
    let fake = Fake {
        finalizer: true,
        ..Fake::default()
    };
    *fake.unfinished_cleanup.lock().unwrap() = 2;
    let mut h = Harness::start(fake, config(), &[item("a", "1")]).await;
    h.next_call().await;
    h.api.delete("a").await.unwrap();
    let (t1, c) = h.next_call().await;
    assert_eq!(c, Call::Cleanup("a".into()));
    let o = h.api.get("a").await.unwrap();
    assert_eq!(
        o.metadata.finalizers,
        ["aos.edge/test"],
        "not finished: it stays"
    );
    let (t2, _) = h.next_call().await;
    let (t3, _) = h.next_call().await;
    assert!(t2 - t1 >= Duration::from_secs(2) && t3 - t2 >= Duration::from_secs(2));
    h.quiet_for(Duration::from_secs(5)).await;
    assert!(
        h.api.get_opt("a").await.unwrap().is_none(),
        "finished: gone"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn requeue_runs_again_after_its_delay_and_await_change_does_not() {
    let fake = Fake::default();
    *fake.action.lock().unwrap() = Some(Action::Requeue(Duration::from_secs(30)));
    let mut h = Harness::start(fake, config(), &[item("a", "1")]).await;
    let t0 = h.next_call().await.0;
    let t1 = h.next_call().await.0;
    assert_eq!((t1 - t0).as_secs(), 30);
    *h.fake.action.lock().unwrap() = Some(Action::AwaitChange);
    h.next_call().await;
    h.quiet_for(Duration::from_secs(3600)).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn resync_and_wakers_reconcile_unchanged_objects() {
    let cfg = ControllerConfig {
        resync: Duration::from_secs(600),
        ..config()
    };
    let mut h = Harness::start(Fake::default(), cfg, &[item("a", "1")]).await;
    let t0 = h.next_call().await.0;
    let t1 = h.next_call().await.0;
    assert_eq!((t1 - t0).as_secs(), 600, "resync");
    h.waker.wake("a");
    let t2 = h.next_call().await.0;
    assert!(t2 - t1 < Duration::from_secs(1), "a wake-up runs at once");
    h.waker.wake("nonexistent");
    h.quiet_for(Duration::from_secs(60)).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn changes_of_a_watched_kind_wake_the_mapped_keys() {
    let mut h = Harness::start_with(Fake::default(), config(), &[item("a", "1")], |c| {
        c.watches::<LayerSpec>(|_layer| vec!["a".to_string()])
    })
    .await;
    h.next_call().await;
    let layers = Api::<LayerSpec>::new(h.backend.clone());
    let layer = Object::new(
        "l1",
        LayerSpec {
            digest: format!("sha256:{}", "a".repeat(64)),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 1,
            ..Default::default()
        },
    );
    layers.apply(&layer).await.unwrap();
    assert_eq!(h.next_call().await.1, Call::Apply("a".into(), 1));
    layers
        .update_status("l1", |s| s.phase = aos_api::LayerPhase::Ready)
        .await
        .unwrap();
    assert_eq!(
        h.next_call().await.1,
        Call::Apply("a".into(), 1),
        "status changes count"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_running_reconcile() {
    let fake = Fake::default();
    *fake.hold.lock().unwrap() = Duration::from_secs(3);
    let mut h = Harness::start(fake, config(), &[item("a", "1")]).await;
    let t0 = h.next_call().await.0;
    let fake = h.fake.clone();
    h.stop().await;
    assert!(
        Instant::now() - t0 >= Duration::from_secs(3),
        "stopped before the reconcile ended"
    );
    assert_eq!(fake.concurrent.load(Ordering::SeqCst), 0);
}
