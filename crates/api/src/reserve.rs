//! What an instance reserves on its node: the rule placement decides by and `aosctl get nodes`
//! reports with. Its item's `requestedResources` clamped to its quotas, else the quota times the
//! node's resource ratio (percent, 50 by default), else nothing.

use crate::itemconfig::RunConfig;

/// The ratio of a quota reserved when a node declares none (percent).
pub const DEFAULT_RATIO: f64 = 50.0;

/// What an item asks for: requests and quotas of CPU (DMIPS) and RAM (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asks {
    pub cpu_request: Option<u64>,
    pub ram_request: Option<u64>,
    pub cpu_quota: Option<u64>,
    pub ram_quota: Option<u64>,
}

impl Asks {
    /// What an item's resolved config asks for.
    pub fn of(config: &RunConfig) -> Asks {
        let ic = config.item();
        let requested = ic.other.get("requestedResources");
        let req = |k: &str| requested.and_then(|r| r.get(k)).and_then(|v| v.as_u64());
        Asks {
            cpu_request: req("cpu"),
            ram_request: req("ram"),
            cpu_quota: ic.quotas.cpu_dmips_limit,
            ram_quota: ic.quotas.ram_limit,
        }
    }

    /// DMIPS reserved on a node whose CPU ratio is `ratio`.
    pub fn cpu(&self, ratio: f64) -> u64 {
        reserve(self.cpu_request, self.cpu_quota, ratio)
    }

    /// Bytes of RAM reserved on a node whose RAM ratio is `ratio`.
    pub fn ram(&self, ratio: f64) -> u64 {
        reserve(self.ram_request, self.ram_quota, ratio)
    }
}

/// A request clamped to the quota, else the quota times `ratio` percent, else nothing.
pub fn reserve(request: Option<u64>, quota: Option<u64>, ratio: f64) -> u64 {
    match (request, quota) {
        (Some(r), Some(q)) => r.min(q),
        (Some(r), None) => r,
        (None, Some(q)) => (q as f64 * ratio / 100.0).round() as u64,
        (None, None) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::reserve;

    #[test]
    fn a_request_is_clamped_to_its_quota_and_a_quota_alone_reserves_its_ratio() {
        assert_eq!(reserve(Some(300), Some(200), 50.0), 200);
        assert_eq!(reserve(Some(300), None, 50.0), 300);
        assert_eq!(reserve(None, Some(1000), 25.0), 250);
        assert_eq!(reserve(None, None, 50.0), 0);
    }
}
