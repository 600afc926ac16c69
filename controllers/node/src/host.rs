//! Reading host facts from procfs and the filesystem: memory, CPU times and clock, OS, node id,
//! disk usage. Parsers are pure functions over the file text.

use std::path::Path;

/// `(MemTotal, MemAvailable)` in bytes from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// Cumulative CPU time of the `cpu` line of `/proc/stat`: (busy, total) in ticks.
pub fn parse_cpu_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The highest `cpu MHz` of `/proc/cpuinfo`, where the kernel reports one.
pub fn parse_cpu_mhz(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
}

/// `PRETTY_NAME` of `/etc/os-release`.
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The node id: the configured one, else `/etc/machine-id`, else the host name.
pub fn node_id(configured: Option<&str>) -> String {
    if let Some(id) = configured.filter(|s| !s.is_empty()) {
        return id.to_string();
    }
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_string();
        }
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".to_string())
}

/// A resource name for the node id: lowercase letters, digits, `-` and `.`.
pub fn object_name(node_id: &str) -> String {
    let s: String = node_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if s.is_empty() {
        "node".into()
    } else {
        s.chars().take(253).collect()
    }
}

/// `(total, used)` bytes of the filesystem holding `path`.
/// The source address the host would use on its default route (a UDP socket "connected" to a
/// documentation address: nothing is sent), `None` without an IPv4 default route.
pub fn default_route_source() -> Option<std::net::Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}

pub fn disk_usage(path: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size() as u64;
    let total = s.blocks() as u64 * frag;
    let free = s.blocks_free() as u64 * frag;
    Some((total, total.saturating_sub(free)))
}

/// The OS version: os-release's name, else the kernel release.
pub fn os_version() -> Option<String> {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| parse_os_release(&t))
        .or_else(|| {
            nix::sys::utsname::uname()
                .ok()
                .map(|u| u.release().to_string_lossy().into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_total_and_available_bytes() {
        let t = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo(t), (24576000 * 1024, 20000000 * 1024));
    }

    #[test]
    fn proc_stat_gives_busy_and_total_ticks() {
        let t = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu_stat(t), Some((150, 1000)));
        assert_eq!(parse_cpu_stat("intr 1"), None);
    }

    #[test]
    fn cpuinfo_gives_the_highest_clock() {
        let t = "processor: 0\ncpu MHz\t\t: 2400.000\nprocessor: 1\ncpu MHz\t\t: 2600.5\n";
        assert_eq!(parse_cpu_mhz(t), Some(2600.5));
        assert_eq!(parse_cpu_mhz("Features: fp asimd"), None);
    }

    #[test]
    fn node_ids_become_valid_object_names() {
        assert_eq!(object_name("Node_1"), "node-1");
        assert_eq!(object_name("0123abcd"), "0123abcd");
        assert_eq!(object_name("__"), "node");
        assert_eq!(node_id(Some("given")), "given");
        assert!(!node_id(None).is_empty());
    }

    #[test]
    fn os_release_gives_the_pretty_name() {
        let t = "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release(t).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }
}
