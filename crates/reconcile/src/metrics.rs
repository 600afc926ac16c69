//! The controller runtime's metrics, per kind: reconciles by result, reconcile duration, queue
//! depth and keys backing off; and what the reconcilers time themselves (the phases of their
//! work) and fetch. One [`ControllerMetrics`] is shared by every controller and
//! registered once with a Prometheus registry (or never, and then it only counts).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The kind a controller reconciles.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Result_ {
    ok,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: String,
    result: Result_,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    kind: String,
    phase: String,
}

type HistogramFamily<L = KindLabel> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The metrics every controller updates.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    reconciles: Family<ResultLabels, Counter>,
    duration: HistogramFamily,
    queue_depth: Family<KindLabel, Gauge>,
    backing_off: Family<KindLabel, Gauge>,
    phases: HistogramFamily<PhaseLabels>,
    downloaded: Family<KindLabel, Counter>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            reconciles: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            queue_depth: Family::default(),
            backing_off: Family::default(),
            phases: Family::new_with_constructor(duration_histogram),
            downloaded: Family::default(),
        }
    }
}

impl ControllerMetrics {
    /// Registers the metrics (`aosd_controller_*`, `aosd_phase_duration_seconds`,
    /// `aosd_downloaded_bytes`) with `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let top = registry.sub_registry_with_prefix("aosd");
        top.register(
            "phase_duration_seconds",
            "How long each phase of an object's work took: Item resolve and pull, Layer download, unpack and verify, Instance start and ready",
            self.phases.clone(),
        );
        top.register(
            "downloaded_bytes",
            "Bytes fetched from registries, HTTP servers and archives, by kind",
            self.downloaded.clone(),
        );
        let r = registry.sub_registry_with_prefix("aosd_controller");
        r.register(
            "reconciles",
            "Reconciles run, by kind and result",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "How long one reconcile took, by kind",
            self.duration.clone(),
        );
        r.register(
            "queue_depth",
            "Keys waiting to be reconciled (due or delayed), by kind",
            self.queue_depth.clone(),
        );
        r.register(
            "backing_off",
            "Keys whose last reconcile failed and that wait for their retry, by kind",
            self.backing_off.clone(),
        );
    }

    /// Records how long one phase of an object's work took (`Layer`/`download`,
    /// `Instance`/`start`…).
    pub fn phase(&self, kind: &str, phase: &str, took: std::time::Duration) {
        self.phases
            .get_or_create(&PhaseLabels {
                kind: kind.to_string(),
                phase: phase.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts bytes fetched from the network for objects of `kind`.
    pub fn downloaded(&self, kind: &str, bytes: u64) {
        self.downloaded
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc_by(bytes);
    }

    /// Counts one reconcile of `kind` that took `seconds`.
    pub(crate) fn reconciled(&self, kind: &str, ok: bool, seconds: f64) {
        let result = if ok { Result_::ok } else { Result_::error };
        self.reconciles
            .get_or_create(&ResultLabels {
                kind: kind.to_string(),
                result,
            })
            .inc();
        self.duration
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    /// Sets the queue's depth and the keys backing off for `kind`.
    pub(crate) fn queue(&self, kind: &str, depth: usize, backing_off: usize) {
        let k = KindLabel {
            kind: kind.to_string(),
        };
        self.queue_depth.get_or_create(&k).set(depth as i64);
        self.backing_off.get_or_create(&k).set(backing_off as i64);
    }
}
