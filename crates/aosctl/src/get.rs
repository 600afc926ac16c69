//! `get` (tables, wide, YAML, JSON, names, watch) and `wait`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use aos_api::{ConditionStatus, DynObject};
use aosctl::allocation::Allocated;
use aosctl::client::Client;
use aosctl::print;
use futures::StreamExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// KIND, KIND,KIND… or all (names, plurals and short names work).
    kinds: String,
    names: Vec<String>,
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<Output>,
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
    /// After listing, print every change as it happens.
    #[arg(short = 'w', long)]
    watch: bool,
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// KIND/NAME, or KIND with NAME after it.
    target: String,
    name: Option<String>,
    /// condition=TYPE[=True|False|Unknown], create or delete.
    #[arg(long = "for")]
    for_: String,
    #[arg(long, default_value = "30s")]
    timeout: aos_api::AosDuration,
}

/// What each node's instances take (the `INSTANCES`, `CPU-REQ` and `RAM-REQ` columns of
/// `get nodes`).
async fn allocation(
    client: &Client,
    nodes: &[DynObject],
) -> anyhow::Result<BTreeMap<String, Allocated>> {
    let (instances, _) = client.list("Instance", "").await?;
    let (items, _) = client.list("Item", "").await?;
    Ok(aosctl::allocation::per_node(nodes, &instances, &items))
}

fn print_objects(
    objs: &[DynObject],
    output: Option<Output>,
    prefix_kind: bool,
    header: bool,
    per_node: Option<&BTreeMap<String, Allocated>>,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    match output {
        None | Some(Output::Wide) => {
            let wide = output == Some(Output::Wide);
            let Some(first) = objs.first() else {
                return Ok(());
            };
            let mut headers = print::headers(&first.kind, wide);
            let mut rows: Vec<_> = objs
                .iter()
                .map(|o| print::row(o, wide, now, prefix_kind))
                .collect();
            if let Some(taken) = per_node.filter(|_| first.kind == "Node") {
                headers.splice(2..2, ["INSTANCES", "CPU-REQ", "RAM-REQ"]);
                for (row, o) in rows.iter_mut().zip(objs) {
                    let a = taken.get(&o.metadata.name).copied().unwrap_or_default();
                    // What is reserved, and its share of what the node has.
                    let share = |used: u64, text: String, total: &str| match o
                        .status
                        .pointer(total)
                        .and_then(|v| v.as_u64())
                    {
                        Some(t) if t > 0 => format!("{text} ({}%)", used * 100 / t),
                        _ => text,
                    };
                    let cpu = share(a.cpu, a.cpu.to_string(), "/dmips");
                    let ram = share(a.ram, print::bytes(a.ram), "/totalRam");
                    row.splice(2..2, [a.instances.to_string(), cpu, ram]);
                }
            }
            let text = print::table(&headers, &rows);
            let text = if header {
                text.as_str()
            } else {
                text.split_once('\n').map_or("", |(_, rest)| rest)
            };
            print!("{text}");
        }
        Some(Output::Name) => {
            for o in objs {
                println!("{}/{}", o.kind.to_ascii_lowercase(), o.metadata.name);
            }
        }
        Some(Output::Yaml | Output::Json) => {
            for o in objs {
                print_value(&serde_json::to_value(o)?, output)?;
            }
        }
    }
    Ok(())
}

fn print_value(v: &serde_json::Value, output: Option<Output>) -> anyhow::Result<()> {
    if output == Some(Output::Json) {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", print::yaml(v));
    }
    Ok(())
}

/// What `get` names: `KIND[,KIND…] [NAME…]`, `all`, or `KIND/NAME…` (as kubectl takes them),
/// as kinds with the names asked of each (none: list them all).
fn targets(first: &str, rest: &[String]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    if first.contains('/') {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for arg in std::iter::once(first).chain(rest.iter().map(String::as_str)) {
            let (kind, name) = crate::kind_and_name(arg, None)?;
            let name = name
                .filter(|n| !n.is_empty())
                .with_context(|| format!("{arg:?}: use KIND/NAME for every argument"))?;
            match out.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, names)) => names.push(name),
                None => out.push((kind, vec![name])),
            }
        }
        return Ok(out);
    }
    let kinds: Vec<String> = if first == "all" {
        aos_api::KINDS
            .iter()
            .filter(|k| k.desired)
            .map(|k| k.kind.to_string())
            .collect()
    } else {
        first
            .split(',')
            .map(|k| crate::kind_and_name(k, None).map(|(k, _)| k))
            .collect::<anyhow::Result<_>>()?
    };
    if !rest.is_empty() && kinds.len() > 1 {
        bail!("names go with one kind: get KIND NAME…, or KIND/NAME for each");
    }
    Ok(kinds.into_iter().map(|k| (k, rest.to_vec())).collect())
}

pub async fn get(client: &Client, a: GetArgs) -> anyhow::Result<ExitCode> {
    let targets = targets(&a.kinds, &a.names)?;
    let kinds: Vec<String> = targets.iter().map(|(k, _)| k.clone()).collect();
    if a.watch && kinds.len() != 1 {
        bail!("--watch takes exactly one kind");
    }
    let sel = a.selector.clone().unwrap_or_default();
    let mut failed = false;
    let mut all = Vec::new();
    let mut revision = 0;
    for (kind, names) in &targets {
        let objs = if names.is_empty() {
            let (mut objs, rev) = client.list(kind, &sel).await?;
            revision = rev;
            print::sort_listing(&mut objs);
            objs
        } else {
            let mut objs = Vec::new();
            for n in names {
                match client.get(kind, n).await {
                    Ok(o) => objs.push(o),
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            objs
        };
        all.push(objs);
    }
    let multi = kinds.len() > 1;
    let listed = if a.watch {
        all.first().cloned().unwrap_or_default()
    } else {
        Vec::new()
    };
    let table = matches!(a.output, None | Some(Output::Wide));
    if table {
        let mut first = true;
        for objs in all.iter().filter(|o| !o.is_empty()) {
            if !first {
                println!();
            }
            first = false;
            let per_node = match objs[0].kind.as_str() {
                "Node" if !a.watch => Some(allocation(client, objs).await?),
                _ => None,
            };
            print_objects(objs, a.output, multi, true, per_node.as_ref())?;
        }
        if first && !failed {
            let what = if multi {
                "resources".to_string()
            } else {
                format!("{} resources", kinds[0])
            };
            eprintln!("No {what} found.");
        }
    } else {
        let flat: Vec<DynObject> = all.into_iter().flatten().collect();
        let single = targets.iter().map(|(_, n)| n.len()).sum::<usize>() == 1 && !multi;
        match (a.output, single, flat.len()) {
            (Some(Output::Name), _, _) => print_objects(&flat, a.output, multi, true, None)?,
            (_, true, 0) => {}
            (_, true, 1) => print_value(&serde_json::to_value(&flat[0])?, a.output)?,
            _ => print_value(&print::list_value(&flat), a.output)?,
        }
    }
    if a.watch {
        let names = &targets[0].1;
        let name = if names.len() == 1 {
            names[0].clone()
        } else {
            String::new()
        };
        watch(client, &kinds[0], &name, &sel, revision, a.output, &listed).await?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn watch(
    client: &Client,
    kind: &str,
    name: &str,
    sel: &str,
    mut since: u64,
    output: Option<Output>,
    listed: &[DynObject],
) -> anyhow::Result<()> {
    // The listing printed the header unless it printed nothing.
    let mut need_header = listed.is_empty();
    // Tables print a row only when a printed column (other than the age) changed.
    let table = matches!(output, None | Some(Output::Wide));
    let mut shown: std::collections::HashMap<String, Vec<String>> = listed
        .iter()
        .map(|o| (o.metadata.name.clone(), visible_row(o, output)))
        .collect();
    loop {
        let mut events = client.watch(kind, name, sel, since).await?;
        let mut relist = false;
        while let Some(ev) = events.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) if e.code() == Some(tonic::Code::OutOfRange) => {
                    relist = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            if table {
                let row = visible_row(&ev.object, output);
                let name = &ev.object.metadata.name;
                if ev.type_ == "DELETED" {
                    shown.remove(name);
                } else if shown.get(name) == Some(&row) {
                    continue;
                } else {
                    shown.insert(name.clone(), row);
                }
            }
            if output == Some(Output::Yaml) {
                println!("---");
            }
            print_objects(
                std::slice::from_ref(&ev.object),
                output,
                false,
                need_header,
                None,
            )?;
            need_header = false;
        }
        if !relist {
            return Ok(());
        }
        // Too far behind: list again and go on from there.
        since = client.list(kind, sel).await?.1;
    }
}

/// The cells of an object's table row that a watch compares: all but the ages.
fn visible_row(o: &DynObject, output: Option<Output>) -> Vec<String> {
    let wide = output == Some(Output::Wide);
    let headers = print::headers(&o.kind, wide);
    print::row(o, wide, chrono::Utc::now(), false)
        .into_iter()
        .zip(headers)
        .filter(|(_, h)| *h != "AGE" && !h.ends_with("SEEN"))
        .map(|(cell, _)| cell)
        .collect()
}

/// What `aosctl wait --for` waits for.
#[derive(Debug, PartialEq)]
enum WaitFor {
    Create,
    Delete,
    Condition(String, ConditionStatus),
}

fn parse_for(f: &str) -> anyhow::Result<WaitFor> {
    match f {
        "create" => return Ok(WaitFor::Create),
        "delete" => return Ok(WaitFor::Delete),
        _ => {}
    }
    let rest = f.strip_prefix("condition=").with_context(|| {
        format!("--for={f:?}: use condition=TYPE[=True|False|Unknown], create or delete")
    })?;
    let (t, want) = match rest.split_once('=') {
        Some((t, v)) => (t, v),
        None => (rest, "True"),
    };
    let want = match want.to_ascii_lowercase().as_str() {
        "true" => ConditionStatus::True,
        "false" => ConditionStatus::False,
        "unknown" => ConditionStatus::Unknown,
        other => bail!("--for: condition status {other:?} is not True, False or Unknown"),
    };
    Ok(WaitFor::Condition(t.to_string(), want))
}

pub async fn wait(client: &Client, a: WaitArgs) -> anyhow::Result<ExitCode> {
    let (kind, name) = crate::kind_and_name(&a.target, a.name.as_deref())?;
    let name = name.context("name the resource to wait for: KIND/NAME")?;
    let cond = parse_for(&a.for_)?;
    let what = format!("{}/{name}", kind.to_ascii_lowercase());
    let met = |o: Option<&DynObject>| match (&cond, o) {
        (WaitFor::Delete, o) => o.is_none(),
        (WaitFor::Create, o) => o.is_some(),
        (WaitFor::Condition(..), None) => false,
        (WaitFor::Condition(t, want), Some(o)) => o.condition(t).is_some_and(|c| c.status == *want),
    };
    // Waiting for a condition of an object on its way out can only end one way.
    let terminating = |o: Option<&DynObject>| {
        matches!(cond, WaitFor::Condition(..))
            && o.is_some_and(|o| o.metadata.deletion_timestamp.is_some())
    };
    let wait = async {
        let mut events = client.watch(&kind, &name, "", 0).await?;
        let current = client.get_opt(&kind, &name).await?;
        if matches!(cond, WaitFor::Condition(..)) && current.is_none() {
            bail!("{what} not found (wait --for=create first to wait for it to appear)");
        }
        if terminating(current.as_ref()) {
            bail!("{what} is being deleted");
        }
        if met(current.as_ref()) {
            return Ok(());
        }
        while let Some(ev) = events.next().await {
            let ev = ev?;
            let obj = (ev.type_ != "DELETED").then_some(&ev.object);
            if terminating(obj) {
                bail!("{what} is being deleted");
            }
            if met(obj) {
                return Ok(());
            }
            if obj.is_none() && matches!(cond, WaitFor::Condition(..)) {
                bail!("{what} was deleted");
            }
        }
        bail!("the watch of {what} ended")
    };
    let Ok(result) = tokio::time::timeout(a.timeout.0, wait).await else {
        bail!(
            "timed out after {} waiting for the condition on {what}",
            a.timeout
        );
    };
    result?;
    println!("{what} condition met");
    Ok(ExitCode::SUCCESS)
}
