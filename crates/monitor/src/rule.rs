//! One alert rule over one series of samples: raise when the value stays at or above the
//! maximum for `minTimeout`, continue every `minTimeout` while it stays at or above the
//! minimum, fall when it stays below the minimum for `minTimeout` (the reference's rules).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The thresholds of one rule (percent or bytes, as the parameter says).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    pub min: f64,
    pub max: f64,
    pub min_timeout: Duration,
}

impl From<&aos_api::AlertRule> for Thresholds {
    fn from(r: &aos_api::AlertRule) -> Self {
        Thresholds {
            min: r.min_threshold,
            max: r.max_threshold,
            min_timeout: r.min_timeout.0,
        }
    }
}

/// What a sample did to the alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Raise,
    Continue,
    Fall,
}

impl Transition {
    /// The word the cloud protocol uses (`raise`, `continue`, `fall`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Raise => "raise",
            Transition::Continue => "continue",
            Transition::Fall => "fall",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// No alert; the value has been at or above the maximum since then.
    Normal { above_since: Option<DateTime<Utc>> },
    /// In alert, last reported then; the value has been below the minimum since then.
    Alert {
        reported: DateTime<Utc>,
        below_since: Option<DateTime<Utc>>,
    },
}

/// The state of one rule over one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Processor {
    rule: Thresholds,
    state: State,
}

impl Processor {
    pub fn new(rule: Thresholds) -> Self {
        Processor {
            rule,
            state: State::Normal { above_since: None },
        }
    }

    pub fn rule(&self) -> Thresholds {
        self.rule
    }

    /// Whether the alert is raised.
    pub fn alerting(&self) -> bool {
        matches!(self.state, State::Alert { .. })
    }

    /// Takes the sample `value` taken at `at`; samples must come in time order (an older one is
    /// ignored).
    pub fn sample(&mut self, value: f64, at: DateTime<Utc>) -> Option<Transition> {
        let timeout = chrono::Duration::from_std(self.rule.min_timeout).unwrap_or_default();
        let held = |since: DateTime<Utc>| at - since >= timeout;
        match &mut self.state {
            State::Normal { above_since } => {
                if value < self.rule.max {
                    *above_since = None;
                    return None;
                }
                let since = *above_since.get_or_insert(at);
                if at < since || !held(since) {
                    return None;
                }
                self.state = State::Alert {
                    reported: at,
                    below_since: None,
                };
                Some(Transition::Raise)
            }
            State::Alert {
                reported,
                below_since,
            } => {
                if value >= self.rule.min {
                    *below_since = None;
                    if at > *reported && held(*reported) {
                        *reported = at;
                        return Some(Transition::Continue);
                    }
                    return None;
                }
                let since = *below_since.get_or_insert(at);
                if at < since || !held(since) {
                    return None;
                }
                self.state = State::Normal { above_since: None };
                Some(Transition::Fall)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(s)
    }

    fn rule(min: f64, max: f64, timeout_s: u64) -> Processor {
        Processor::new(Thresholds {
            min,
            max,
            min_timeout: Duration::from_secs(timeout_s),
        })
    }

    fn run(p: &mut Processor, values: &[f64], every_s: i64) -> Vec<Option<Transition>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| p.sample(*v, at(i as i64 * every_s)))
            .collect()
    }

    #[test]
    fn the_reference_vector_raises_continues_and_falls() {
        // min 90, max 95, minTimeout 1 s, a sample every 2 s.
        let mut p = rule(90.0, 95.0, 1);
        let got = run(&mut p, &[1., 2., 90., 91., 95., 96., 90., 80., 80.], 2);
        use Transition::*;
        assert_eq!(
            got,
            [
                None,
                None,
                None,
                None,
                None,
                Some(Raise),
                Some(Continue),
                None,
                Some(Fall)
            ]
        );
        assert!(!p.alerting());
    }

    #[test]
    fn a_spike_shorter_than_the_timeout_raises_nothing() {
        let mut p = rule(90.0, 95.0, 5);
        assert_eq!(run(&mut p, &[99., 99., 10., 99., 99.], 2), [None; 5]);
    }

    #[test]
    fn a_dip_shorter_than_the_timeout_does_not_end_the_alert() {
        let mut p = rule(50.0, 80.0, 3);
        let got = run(&mut p, &[90., 90., 90., 10., 60., 10., 60.], 2);
        assert_eq!(
            got.iter().filter(|t| **t == Some(Transition::Fall)).count(),
            0
        );
        assert!(p.alerting());
    }

    #[test]
    fn continue_comes_once_per_timeout_while_in_alert() {
        let mut p = rule(50.0, 80.0, 4);
        let got = run(&mut p, &[90., 90., 90., 70., 70., 70., 70.], 2);
        use Transition::*;
        assert_eq!(
            got,
            [
                None,
                None,
                Some(Raise),
                None,
                Some(Continue),
                None,
                Some(Continue)
            ]
        );
    }

    #[test]
    fn a_zero_timeout_raises_and_falls_at_the_first_sample_across() {
        let mut p = rule(50.0, 80.0, 0);
        use Transition::*;
        assert_eq!(run(&mut p, &[80., 40.], 1), [Some(Raise), Some(Fall)]);
    }

    #[test]
    fn an_older_sample_changes_nothing() {
        let mut p = rule(90.0, 95.0, 1);
        assert_eq!(p.sample(99., at(10)), None);
        assert_eq!(p.sample(99., at(5)), None);
        assert_eq!(p.sample(99., at(11)), Some(Transition::Raise));
    }
}
