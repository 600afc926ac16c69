//! Durations as the reference's configs write them: ISO-8601 (`PT1M`, `P1DT2H`), Go style
//! (`30d`, `1h1m5s`, `500ms`) or bare seconds (`10`, `1.5`). Printed back in Go style.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A duration that reads every form the reference accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AosDuration(pub Duration);

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (use e.g. \"30s\", \"1h30m\", \"PT1M\" or seconds)")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl AosDuration {
    pub fn from_secs(s: u64) -> Self {
        AosDuration(Duration::from_secs(s))
    }

    pub fn as_duration(&self) -> Duration {
        self.0
    }
}

impl From<Duration> for AosDuration {
    fn from(d: Duration) -> Self {
        AosDuration(d)
    }
}

fn unit_nanos(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "d" => 86400e9,
        "w" => 7.0 * 86400e9,
        _ => return None,
    })
}

fn parse_go(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = unit_nanos(&rest[..unit_end])?;
        total += value * nanos;
        rest = &rest[unit_end..];
    }
    Some(total)
}

fn parse_iso(s: &str) -> Option<f64> {
    let body = s.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut total = 0.0;
    let mut parts = 0;
    let mut scan = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut rest = part;
        while !rest.is_empty() {
            let end = rest.find(|c: char| c.is_ascii_alphabetic())?;
            let value: f64 = rest[..end].parse().ok()?;
            let unit = rest[end..].chars().next()?;
            let (_, secs) = units.iter().find(|(u, _)| *u == unit)?;
            total += value * secs * 1e9;
            parts += 1;
            rest = &rest[end + unit.len_utf8()..];
        }
        Some(())
    };
    scan(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 7.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        scan(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (parts > 0).then_some(total)
}

impl FromStr for AosDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let err = |reason| ParseDurationError {
            input: input.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty"));
        }
        let nanos = if let Ok(secs) = s.parse::<f64>() {
            secs * 1e9
        } else if s.starts_with('P') {
            parse_iso(s).ok_or_else(|| err("not an ISO-8601 duration"))?
        } else {
            parse_go(s).ok_or_else(|| err("unknown unit or number"))?
        };
        if !nanos.is_finite() || nanos < 0.0 {
            return Err(err("must be a finite, non-negative duration"));
        }
        Ok(AosDuration(Duration::from_nanos(nanos.round() as u64)))
    }
}

impl fmt::Display for AosDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return write!(f, "0s");
        }
        if d.subsec_nanos() != 0 && d.as_secs() == 0 {
            let n = d.as_nanos();
            return if n % 1_000_000 == 0 {
                write!(f, "{}ms", n / 1_000_000)
            } else if n % 1000 == 0 {
                write!(f, "{}us", n / 1000)
            } else {
                write!(f, "{n}ns")
            };
        }
        let mut secs = d.as_secs();
        let days = secs / 86400;
        secs %= 86400;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if days > 0 {
            write!(f, "{days}d")?;
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        let ms = d.subsec_millis();
        if ms > 0 {
            write!(f, "{s}.{ms:03}s")?;
        } else if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for AosDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AosDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => format!("{n}").parse().map_err(serde::de::Error::custom),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for AosDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: Go style (\"1h30m\", \"30d\"), ISO-8601 (\"PT1M\") or seconds",
            "x-kubernetes-int-or-string": true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> f64 {
        s.parse::<AosDuration>().unwrap().0.as_secs_f64()
    }

    #[test]
    fn every_form_of_the_reference_parses() {
        assert_eq!(secs("PT1M"), 60.0);
        assert_eq!(secs("P1DT2H"), 93600.0);
        assert_eq!(secs("PT0.5S"), 0.5);
        assert_eq!(secs("30d"), 30.0 * 86400.0);
        assert_eq!(secs("1h1m5s"), 3665.0);
        assert_eq!(secs("500ms"), 0.5);
        assert_eq!(secs("10"), 10.0);
        assert_eq!(secs("1.5"), 1.5);
    }

    #[test]
    fn nonsense_is_refused_with_the_input_in_the_message() {
        for bad in ["", "abc", "5x", "P", "PT", "-3s", "1h-2m"] {
            let err = bad.parse::<AosDuration>().unwrap_err();
            assert!(err.to_string().contains("invalid duration"), "{bad}");
        }
    }

    #[test]
    fn durations_print_in_go_style_and_read_back() {
        for s in [
            "0s", "1s", "1m30s", "2h", "30d", "1d1h1m1s", "500ms", "1.500s",
        ] {
            let d: AosDuration = s.parse().unwrap();
            assert_eq!(d.to_string().parse::<AosDuration>().unwrap(), d, "{s}");
        }
        assert_eq!(AosDuration::from_secs(90).to_string(), "1m30s");
    }

    #[test]
    fn yaml_numbers_and_strings_both_deserialize() {
        let d: AosDuration = serde_json::from_str("5").unwrap();
        assert_eq!(d.0, Duration::from_secs(5));
        let d: AosDuration = serde_json::from_str("\"PT5S\"").unwrap();
        assert_eq!(d.0, Duration::from_secs(5));
    }
}
