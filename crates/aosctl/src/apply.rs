//! `apply`, `diff` and `delete`: the commands that change (or would change) the node.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use aos_api::DynObject;
use aosctl::client::{Client, ClientError};
use aosctl::files::{self, FilesError};
use aosctl::{merge, print};
use futures::StreamExt;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Files, directories or - (stdin) with YAML or JSON manifests.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Also read the subdirectories of directories.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Only show what would change (the server checks everything but stores nothing).
    #[arg(long)]
    dry_run: bool,
    /// Delete resources matching -l that are not in the files.
    #[arg(long, requires = "selector")]
    prune: bool,
    /// Label selector for --prune.
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
    /// Show a progress bar per Item until every Item is Ready (exit 1 if one fails).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "10m")]
    timeout: aos_api::AosDuration,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    #[arg(short = 'R', long)]
    recursive: bool,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// KIND, KIND/NAME, or nothing with -f.
    kind: Option<String>,
    names: Vec<String>,
    /// Delete the resources named in these files.
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Delete every resource of KIND matching this selector.
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
    /// Succeed when a resource is already gone.
    #[arg(long)]
    ignore_not_found: bool,
    #[arg(long)]
    dry_run: bool,
    /// Wait until the resources are really gone (finalizers done).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "60s")]
    timeout: aos_api::AosDuration,
}

fn label(o: &DynObject) -> String {
    format!("{}/{}", o.kind.to_ascii_lowercase(), o.metadata.name)
}

/// One object of the files, as checked by the server.
struct Checked {
    /// As the file has it.
    file: DynObject,
    /// What the node has now.
    live: Option<DynObject>,
    /// What the store would hold after the apply (from the server's dry run).
    result: DynObject,
    outcome: String,
}

impl Checked {
    /// Whether applying changes anything a file can set.
    fn differs(&self) -> bool {
        self.live.as_ref().map(merge::view) != Some(merge::view(&self.result))
    }
}

/// Reads the manifests, then has the server check every object (merged with what the node has,
/// see [`merge`]) before anything is stored.
async fn read_and_check(
    client: &Client,
    sources: &[String],
    recursive: bool,
) -> anyhow::Result<Vec<Checked>> {
    let docs = match files::read_all(sources, recursive) {
        Ok(d) => d,
        Err(FilesError::Invalid(errs)) => {
            let lines: Vec<String> = errs.0.iter().map(|e| format!("  {e}")).collect();
            bail!(
                "the manifests are invalid; nothing was changed:\n{}",
                lines.join("\n")
            );
        }
        Err(e) => return Err(e.into()),
    };
    let mut checked = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for d in docs {
        let at = format!("{}:{}", d.file.as_deref().unwrap_or("-"), d.line);
        if !seen.insert(d.object.key()) {
            errors.push(format!("  {at}: {} appears twice", label(&d.object)));
            continue;
        }
        let live = match client.get_opt(&d.object.kind, d.object.name()).await {
            Ok(l) => l,
            Err(e) => {
                errors.push(format!("  {at}: {}: {e}", label(&d.object)));
                continue;
            }
        };
        // The dry run checks; it does not compare-and-swap (status writes move the revision).
        let mut merged = merge::merge(&d.object, live.as_ref());
        merged.metadata.resource_version = d.object.metadata.resource_version;
        match client.apply(&merged, true).await {
            Ok((result, outcome)) => checked.push(Checked {
                file: d.object,
                live,
                result,
                outcome,
            }),
            Err(e) => errors.push(format!("  {at}: {}: {e}", label(&d.object))),
        }
    }
    if !errors.is_empty() {
        bail!(
            "the server refused these objects; nothing was changed:\n{}",
            errors.join("\n")
        );
    }
    Ok(checked)
}

/// Applies one object, merged with the latest live one; a concurrent change is merged again.
async fn apply_one(client: &Client, file: &DynObject) -> anyhow::Result<String> {
    let mut attempt = 0;
    loop {
        let live = client.get_opt(&file.kind, file.name()).await?;
        match client
            .apply(&merge::merge(file, live.as_ref()), false)
            .await
        {
            Ok((_, outcome)) => return Ok(outcome),
            // Another write (a status update, most often) came between the read and the write.
            Err(e) if e.code() == Some(tonic::Code::Aborted) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn unified(live: Option<&DynObject>, merged: &DynObject) -> String {
    let text = |o: Option<&DynObject>| o.map(|o| print::yaml(&merge::view(o))).unwrap_or_default();
    let name = label(merged);
    similar::TextDiff::from_lines(&text(live), &text(Some(merged)))
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{name}"), &format!("merged/{name}"))
        .to_string()
}

pub async fn apply(client: &Client, a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let checked = read_and_check(client, &a.files, a.recursive).await?;
    let mut applied = HashSet::new();
    for c in &checked {
        let obj = &c.file;
        applied.insert(obj.key());
        if a.dry_run {
            println!("{} {} (dry run)", label(obj), c.outcome);
            if c.live.is_some() && c.differs() {
                print!("{}", unified(c.live.as_ref(), &c.result));
            }
            continue;
        }
        let outcome = apply_one(client, obj)
            .await
            .with_context(|| format!("failed to apply {}", label(obj)))?;
        println!("{} {outcome}", label(obj));
    }
    if a.wait && !a.dry_run {
        let items: Vec<String> = checked
            .iter()
            .filter(|c| c.file.kind == "Item")
            .map(|c| c.file.metadata.name.clone())
            .collect();
        if !items.is_empty() {
            let Ok(result) =
                tokio::time::timeout(a.timeout.0, crate::progress::wait_items(client, &items))
                    .await
            else {
                bail!(
                    "timed out after {} waiting for the items to be Ready",
                    a.timeout
                );
            };
            if !result? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if a.prune {
        let sel = a.selector.as_deref().unwrap_or_default();
        for info in aos_api::KINDS.iter().filter(|k| k.desired) {
            for o in client.list(info.kind, sel).await?.0 {
                if applied.contains(&o.key()) || o.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                client.delete(&o.kind, o.name(), a.dry_run).await?;
                println!(
                    "{} pruned{}",
                    label(&o),
                    if a.dry_run { " (dry run)" } else { "" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn diff(client: &Client, a: DiffArgs) -> anyhow::Result<ExitCode> {
    let checked = read_and_check(client, &a.files, a.recursive).await?;
    let mut differs = false;
    for c in checked.iter().filter(|c| c.differs()) {
        print!("{}", unified(c.live.as_ref(), &c.result));
        differs = true;
    }
    Ok(if differs {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn wait_gone(
    client: &Client,
    kind: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let wait = async {
        let mut events = client.watch(kind, name, "", 0).await?;
        if client.get_opt(kind, name).await?.is_none() {
            return Ok(());
        }
        while let Some(ev) = events.next().await {
            if ev?.type_ == "DELETED" {
                return Ok(());
            }
        }
        bail!("the watch ended before {kind}/{name} was gone")
    };
    let Ok(result) = tokio::time::timeout(timeout, wait).await else {
        bail!(
            "timed out waiting for {}/{name} to be deleted",
            kind.to_ascii_lowercase()
        );
    };
    result
}

/// Marks `targets` for deletion in one request; the results in the order given. aosd marks
/// them in that order (what is deleted first is removed first: image retention keeps the last
/// removed versions of an Item) and commits them together: 100 marks one request each took
/// ~2 s, each waiting for its own commit, and the stops of the last began that much later. An
/// aosd without the batch call gets them one at a time.
async fn mark_all(
    client: &Client,
    targets: &[(String, String)],
    dry_run: bool,
) -> Result<Vec<Result<Option<DynObject>, ClientError>>, ClientError> {
    match client.delete_many(targets, dry_run).await {
        Err(e) if e.code() == Some(tonic::Code::Unimplemented) => {
            let mut marks = Vec::with_capacity(targets.len());
            for (kind, name) in targets {
                marks.push(client.delete(kind, name, dry_run).await);
            }
            Ok(marks)
        }
        r => r,
    }
}

pub async fn delete(client: &Client, a: DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut targets: Vec<(String, String)> = Vec::new();
    if !a.files.is_empty() {
        for d in files::read_all(&a.files, a.recursive)? {
            targets.push((d.object.kind.clone(), d.object.metadata.name.clone()));
        }
    }
    if let Some(kind) = &a.kind {
        let (kind, name) = crate::kind_and_name(kind, None)?;
        let mut names = a.names.clone();
        names.extend(name);
        if let Some(sel) = &a.selector {
            names.extend(
                client
                    .list(&kind, sel)
                    .await?
                    .0
                    .into_iter()
                    .map(|o| o.metadata.name),
            );
        }
        if names.is_empty() {
            bail!("name the {kind} resources to delete, or select them with -l");
        }
        targets.extend(names.into_iter().map(|n| (kind.clone(), n)));
    }
    if targets.is_empty() {
        bail!("nothing to delete: give KIND NAME…, KIND/NAME, KIND -l SELECTOR or -f FILE");
    }
    let mut failed = false;
    // Everything is marked first; the waits then run side by side (as kubectl does).
    let mut pending = Vec::new();
    let marks = mark_all(client, &targets, a.dry_run).await?;
    for ((kind, name), marked) in targets.iter().zip(marks) {
        let what = format!("{}/{name}", kind.to_ascii_lowercase());
        let dry = if a.dry_run { " (dry run)" } else { "" };
        match marked {
            Ok(None) => println!("{what} deleted{dry}"),
            Ok(Some(o)) => {
                println!(
                    "{what} marked for deletion{dry}; waiting for finalizers: {}",
                    o.metadata.finalizers.join(", ")
                );
                if a.wait && !a.dry_run {
                    pending.push((kind.clone(), name.clone(), what));
                }
            }
            Err(e) if e.is_not_found() && a.ignore_not_found => {}
            Err(e) => {
                eprintln!("error: {what}: {e}");
                failed = true;
            }
        }
    }
    let waits = pending.iter().map(|(kind, name, what)| async move {
        wait_gone(client, kind, name, a.timeout.0).await?;
        println!("{what} deleted");
        anyhow::Ok(())
    });
    for r in futures::future::join_all(waits).await {
        if let Err(e) = r {
            eprintln!("error: {e:#}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
