//! A DMIPS estimate for nodes whose config does not state one: the CPU clock (from
//! `/proc/cpuinfo`, or timed with a dependent multiply-add chain where the kernel does not report
//! it) times a typical Dhrystone rate of 3.5 DMIPS/MHz per core. It is an estimate for scheduling
//! and quota arithmetic, not a benchmark; configure `node.dmips` for exact figures.

use std::time::{Duration, Instant};

/// DMIPS per MHz of a typical modern core.
pub const DMIPS_PER_MHZ: f64 = 3.5;

/// Estimates the clock in MHz by timing a chain of dependent multiply-adds (about four cycles
/// each on current cores) for `budget`.
pub fn timed_mhz(budget: Duration) -> f64 {
    let start = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut iters: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..100_000 {
            x = std::hint::black_box(
                x.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
        }
        iters += 100_000;
    }
    std::hint::black_box(x);
    iters as f64 * 4.0 / start.elapsed().as_secs_f64() / 1e6
}

/// The node's DMIPS (per-core estimate times the number of cores) and where the clock came
/// from: `/proc/cpuinfo` (estimated) or a timed loop (calibrated).
pub fn estimate(cpuinfo: Option<&str>, cores: u64) -> (u64, aos_api::DmipsSource) {
    let (mhz, source) = match cpuinfo.and_then(crate::host::parse_cpu_mhz) {
        Some(mhz) => (mhz, aos_api::DmipsSource::Estimated),
        None => (
            timed_mhz(Duration::from_millis(50)),
            aos_api::DmipsSource::Calibrated,
        ),
    };
    ((mhz * DMIPS_PER_MHZ * cores as f64).round() as u64, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_scales_with_clock_and_cores() {
        let info = "cpu MHz : 1000.0\n";
        let estimated = aos_api::DmipsSource::Estimated;
        assert_eq!(estimate(Some(info), 1), (3500, estimated));
        assert_eq!(estimate(Some(info), 4), (14000, estimated));
    }

    #[test]
    fn a_clock_from_cpuinfo_is_an_estimate_and_a_timed_one_a_calibration() {
        assert_eq!(
            estimate(Some("cpu MHz : 2000.0\n"), 1).1,
            aos_api::DmipsSource::Estimated
        );
        assert_eq!(
            estimate(Some("model name : ARMv8\n"), 1).1,
            aos_api::DmipsSource::Calibrated
        );
    }

    #[test]
    fn a_timed_clock_is_plausible() {
        let mhz = timed_mhz(Duration::from_millis(20));
        assert!(mhz > 10.0 && mhz < 20_000.0, "{mhz}");
    }
}
