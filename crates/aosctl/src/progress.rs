//! Progress bars of Items being fetched (`apply --wait`): bytes done of bytes total per Item,
//! until every Item is Ready or one fails.

use std::collections::HashMap;

use aos_api::DynObject;
use aosctl::client::{Client, ClientError};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

enum State {
    Working,
    Ready,
    Failed(String),
}

fn state(o: &DynObject) -> State {
    match o.status.get("phase").and_then(|p| p.as_str()) {
        Some("Ready") => State::Ready,
        Some("Failed") => State::Failed(
            o.condition(aos_api::condition::READY)
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_else(|| "failed".into()),
        ),
        _ => State::Working,
    }
}

fn update(bar: &ProgressBar, o: &DynObject) {
    let p = o.status.get("progress");
    let total = p
        .and_then(|p| p.get("totalBytes"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let done = p
        .and_then(|p| p.get("doneBytes"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if total > 0 {
        bar.set_length(total);
        bar.set_position(done);
    }
    bar.set_message(
        o.status
            .get("phase")
            .and_then(|p| p.as_str())
            .unwrap_or("Pending")
            .to_string(),
    );
}

/// Shows bars until all `names` are Ready (true) or one has Failed (false).
pub async fn wait_items(client: &Client, names: &[String]) -> Result<bool, ClientError> {
    let multi = MultiProgress::new();
    let style =
        ProgressStyle::with_template("{prefix:30} {bar:30} {bytes:>10}/{total_bytes:10} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bars = HashMap::new();
    for n in names {
        let bar = multi.add(
            ProgressBar::new(0)
                .with_style(style.clone())
                .with_prefix(format!("item/{n}")),
        );
        bars.insert(n.clone(), bar);
    }
    let mut events = client.watch("Item", "", "", 0).await?;
    let mut pending: HashMap<String, ()> = names.iter().map(|n| (n.clone(), ())).collect();
    let mut failed = false;
    for n in names {
        if let Some(o) = client.get_opt("Item", n).await? {
            check(&o, &bars, &mut pending, &mut failed);
        }
    }
    while !pending.is_empty() {
        let Some(ev) = events.next().await else { break };
        let ev = ev?;
        if bars.contains_key(ev.object.name()) {
            check(&ev.object, &bars, &mut pending, &mut failed);
        }
    }
    Ok(!failed && pending.is_empty())
}

fn check(
    o: &DynObject,
    bars: &HashMap<String, ProgressBar>,
    pending: &mut HashMap<String, ()>,
    failed: &mut bool,
) {
    let name = o.name().to_string();
    let Some(bar) = bars.get(&name) else { return };
    if !pending.contains_key(&name) {
        return;
    }
    update(bar, o);
    match state(o) {
        State::Working => {}
        State::Ready => {
            bar.finish_with_message("Ready");
            pending.remove(&name);
            println!("item/{name} Ready");
        }
        State::Failed(why) => {
            bar.abandon_with_message(format!("Failed: {why}"));
            pending.remove(&name);
            eprintln!("error: item/{name} failed: {why}");
            *failed = true;
        }
    }
}
