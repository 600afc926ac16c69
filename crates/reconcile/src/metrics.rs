//! The controller runtime's metrics, per kind: reconciles by result, reconcile duration, queue
//! depth and keys backing off. One [`ControllerMetrics`] is shared by every controller and
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

type HistogramFamily = Family<KindLabel, Histogram, fn() -> Histogram>;

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
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            reconciles: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            queue_depth: Family::default(),
            backing_off: Family::default(),
        }
    }
}

impl ControllerMetrics {
    /// Registers the metrics (`aosd_controller_*`) with `registry`.
    pub fn register(&self, registry: &mut Registry) {
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
