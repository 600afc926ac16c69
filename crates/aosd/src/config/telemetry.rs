//! `[events]` and `[metrics]`: how many Events are kept and for how long, and where the
//! Prometheus endpoint listens (off by default, loopback by default).

use std::net::SocketAddr;

use anyhow::bail;
use aos_api::AosDuration;
use serde::{Deserialize, Serialize};

/// How many Events are kept, and for how long.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    pub max: usize,
    pub ttl: AosDuration,
}

impl Default for EventsSection {
    fn default() -> Self {
        EventsSection {
            max: 1000,
            ttl: AosDuration::from_secs(3600),
        }
    }
}

impl EventsSection {
    pub fn check(&self) -> anyhow::Result<()> {
        if self.max == 0 || self.ttl.0.is_zero() {
            bail!("events.max and events.ttl must be positive");
        }
        Ok(())
    }
}

/// The Prometheus endpoint, `/metrics`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    pub enabled: bool,
    /// `address:port`; a non-loopback address shows the node's figures to its network.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: false,
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsSection {
    pub fn check(&self) -> anyhow::Result<()> {
        self.addr().map(|_| ())
    }

    /// The address to listen on.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        match self.listen.parse() {
            Ok(a) => Ok(a),
            Err(_) => bail!(
                "metrics.listen: {:?} is not address:port (such as 127.0.0.1:9464)",
                self.listen
            ),
        }
    }
}
