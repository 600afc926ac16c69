//! The restart policy of REFERENCE.md: restart after `restartInterval`; at most `startBurst`
//! starts within `startInterval` of the window's first start, then failed. Values come from
//! the Instance's `restartPolicy`, else the item config's `runParameters`, else the defaults.

use std::time::Duration;

use aos_api::RestartPolicy;
use chrono::{DateTime, Utc};

use crate::config::RunParameters;
use crate::Defaults;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub restart_interval: Duration,
    pub start_burst: u32,
    pub start_interval: Duration,
    pub stop_grace: Duration,
}

impl Policy {
    pub fn resolve(d: &Defaults, item: &RunParameters, inst: Option<&RestartPolicy>) -> Policy {
        let i = inst.cloned().unwrap_or_default();
        Policy {
            restart_interval: i
                .restart_interval
                .or(item.restart_interval)
                .map(|v| v.0)
                .unwrap_or(d.restart_interval),
            start_burst: i
                .start_burst
                .or(item.start_burst)
                .unwrap_or(d.start_burst)
                .max(1),
            start_interval: i
                .start_interval
                .or(item.start_interval)
                .map(|v| v.0)
                .unwrap_or(d.start_interval),
            stop_grace: i.stop_grace.map(|v| v.0).unwrap_or(d.stop_grace),
        }
    }

    /// The window after a start at `now`: a new one when the old one has passed.
    pub fn record_start(
        &self,
        window: Option<DateTime<Utc>>,
        starts: u32,
        now: DateTime<Utc>,
    ) -> (DateTime<Utc>, u32) {
        match window {
            Some(w) if !self.passed(w, now) => (w, starts + 1),
            _ => (now, 1),
        }
    }

    /// Whether a task that stopped at `now` may not start again.
    pub fn exhausted(
        &self,
        window: Option<DateTime<Utc>>,
        starts: u32,
        now: DateTime<Utc>,
    ) -> bool {
        window.is_some_and(|w| !self.passed(w, now)) && starts >= self.start_burst
    }

    fn passed(&self, window: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(window)
            .to_std()
            .unwrap_or_default()
            > self.start_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_api::AosDuration;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_instance_overrides_the_item_which_overrides_the_defaults() {
        let d = Defaults::default();
        let item = RunParameters {
            start_burst: Some(5),
            restart_interval: Some(AosDuration::from_secs(2)),
            ..Default::default()
        };
        let inst = RestartPolicy {
            start_burst: Some(7),
            ..Default::default()
        };
        let p = Policy::resolve(&d, &item, Some(&inst));
        assert_eq!(p.start_burst, 7);
        assert_eq!(p.restart_interval, Duration::from_secs(2));
        assert_eq!(p.start_interval, Duration::from_secs(5));
        assert_eq!(
            Policy::resolve(&d, &RunParameters::default(), None).start_burst,
            3
        );
    }

    #[test]
    fn a_crash_loop_fails_after_the_burst_and_a_late_crash_opens_a_new_window() {
        let p = Policy::resolve(&Defaults::default(), &RunParameters::default(), None);
        let (mut w, mut n) = p.record_start(None, 0, t(0));
        assert!(!p.exhausted(Some(w), n, t(100)));
        (w, n) = p.record_start(Some(w), n, t(1100));
        assert!(!p.exhausted(Some(w), n, t(1200)));
        (w, n) = p.record_start(Some(w), n, t(2200));
        assert_eq!(n, 3);
        assert!(p.exhausted(Some(w), n, t(2300)), "third start within 5 s");
        assert!(
            !p.exhausted(Some(w), n, t(9000)),
            "a crash after the window is a new start"
        );
        let (w2, n2) = p.record_start(Some(w), n, t(9000));
        assert_eq!((w2, n2), (t(9000), 1));
    }
}
