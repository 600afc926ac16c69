//! Speed limits of an instance: a token bucket (`tbf`) on each end of its veth, the host end
//! for what the instance receives and `eth0` inside its namespace for what it sends (shaping
//! at the sender keeps TCP smooth, where policing at the receiver would drop). Set with one
//! `tc` run per direction when the instance is attached; no limit removes the bucket.

use std::path::Path;
use std::process::Command;

use crate::NetError;

/// `tc` arguments for a bucket of `rate` bytes per second on the root of `dev`.
fn tbf(dev: &str, rate: u64) -> Vec<String> {
    let burst = (rate / 50).max(16 * 1024);
    [
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "tbf",
        "rate",
        &format!("{}bit", rate * 8),
        "burst",
        &burst.to_string(),
        "latency",
        "50ms",
    ]
    .map(String::from)
    .to_vec()
}

fn tc(netns: Option<&Path>, args: &[String], must: bool) -> Result<(), NetError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("tc");
            c
        }
        None => Command::new("tc"),
    };
    let out = cmd.args(args).output().map_err(|e| NetError::Io {
        what: "failed to run tc (install iproute2)".into(),
        source: e,
    })?;
    if must && !out.status.success() {
        return Err(NetError::Config(format!(
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Sets (or clears) the limits of the instance whose host veth is `host_veth`.
pub fn apply(
    host_veth: &str,
    netns: &Path,
    upload: Option<u64>,
    download: Option<u64>,
) -> Result<(), NetError> {
    for (ns, dev, rate) in [(None, host_veth, download), (Some(netns), "eth0", upload)] {
        match rate {
            Some(r) if r > 0 => tc(ns, &tbf(dev, r), true)?,
            _ => {
                let del = ["qdisc", "del", "dev", dev, "root"].map(String::from);
                tc(ns, &del, false)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bucket_holds_the_rate_in_bits_and_a_sane_burst() {
        let a = super::tbf("aosv1", 1_048_576);
        assert_eq!(a[7], "8388608bit");
        assert_eq!(a[9], "20971");
        assert_eq!(super::tbf("x", 1000)[9], "16384");
    }
}
