//! `aosctl logs` (an instance's output, like `kubectl logs`) and `aosctl top` (CPU, RAM, state
//! and storage of running instances, from their status).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use aosctl::client::Client;
use aosctl::print;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The Instance (NAME or instance/NAME).
    name: String,
    /// Keep printing new output.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<usize>,
    /// Only lines newer than a duration (5m, 1h, PT30S) or since an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Prefix each line with its time.
    #[arg(long)]
    timestamps: bool,
}

fn since(arg: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(arg) {
        return Ok(t.with_timezone(&Utc));
    }
    let d: aos_api::AosDuration = arg
        .parse()
        .with_context(|| format!("--since {arg:?} is neither a duration nor an RFC 3339 time"))?;
    Ok(now - chrono::Duration::from_std(d.0)?)
}

pub async fn logs(client: &Client, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let name = a.name.strip_prefix("instance/").unwrap_or(&a.name);
    let since = a
        .since
        .as_deref()
        .map(|s| since(s, Utc::now()))
        .transpose()?;
    let mut stream = Box::pin(client.logs(name, a.follow, a.tail, since).await?);
    let mut out = std::io::stdout().lock();
    while let Some(e) = stream.next().await {
        let e = e?;
        if a.timestamps {
            write!(out, "{} ", e.time)?;
        }
        if e.partial {
            write!(out, "{}", e.text)?;
        } else {
            writeln!(out, "{}", e.text)?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Label selector of the Instances to show.
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
}

pub async fn top(client: &Client, a: TopArgs) -> anyhow::Result<ExitCode> {
    let (items, _) = client
        .list("Instance", a.selector.as_deref().unwrap_or(""))
        .await?;
    // Read now by the node; statuses carry usage only when it moved by more than a step.
    let fresh = client.top().await?.unwrap_or_default();
    let num = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|o| {
            let v = serde_json::to_value(o).unwrap_or_default();
            let usage = fresh
                .get(&o.metadata.name)
                .or_else(|| v.pointer("/status/usage"));
            let cell = |f: &dyn Fn(&Value) -> String| usage.map(f).unwrap_or_else(|| "-".into());
            vec![
                o.metadata.name.clone(),
                v.pointer("/status/state")
                    .and_then(Value::as_str)
                    .unwrap_or("activating")
                    .into(),
                cell(&|u| format!("{:.1}%", u["cpuPercent"].as_f64().unwrap_or(0.0))),
                cell(&|u| num(u, "/cpuDmips").to_string()),
                cell(&|u| print::bytes(num(u, "/ramBytes"))),
                cell(&|u| print::bytes(num(u, "/stateBytes"))),
                cell(&|u| print::bytes(num(u, "/storageBytes"))),
                cell(&|u| print::bytes(num(u, "/rxBytes"))),
                cell(&|u| print::bytes(num(u, "/txBytes"))),
            ]
        })
        .collect();
    if rows.is_empty() {
        eprintln!("no Instance resources found");
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        print::table(
            &[
                "NAME",
                "STATE",
                "CPU",
                "DMIPS",
                "RAM",
                "STATE.DAT",
                "STORAGE",
                "NET-IN",
                "NET-OUT"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_back_from_now_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            since("5m", now).unwrap().to_rfc3339(),
            "2026-11-24T11:55:00+00:00"
        );
        assert_eq!(
            since("2026-11-24T10:00:00Z", now).unwrap().to_rfc3339(),
            "2026-11-24T10:00:00+00:00"
        );
        assert!(since("yesterday", now).is_err());
    }
}
