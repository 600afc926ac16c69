//! Watches: one etcd watch per store watch, on the kind's key prefix, fed into a channel by a
//! task. When the member serving it goes away the task watches again from the revision after
//! the last event it delivered, so the stream has no gap and no repeat; when etcd has compacted
//! that revision the stream ends with `Gone`, and the client lists again. The task ends when the
//! stream is dropped.

use std::sync::Arc;
use std::time::Duration;

use aos_api::Revision;
use aos_store::{StoreError, WatchEvent};
use etcd_client::{WatchOptions, WatchResponse};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{convert, transient, unavailable, Shared};

type Tx = mpsc::Sender<Result<WatchEvent, StoreError>>;

/// Events under `from` after revision `since`.
pub(crate) fn start(
    shared: Arc<Shared>,
    from: String,
    since: i64,
) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        tokio::select! {
            _ = tx.closed() => {}
            _ = run(&shared, &from, since, &tx) => {}
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// What one etcd watch ended with.
enum End {
    /// The stream broke: watch again from the next revision.
    Broken(String),
    /// Nothing more to send (the receiver went, or a final error was sent).
    Done,
}

async fn run(shared: &Shared, from: &str, since: i64, tx: &Tx) {
    let mut last = since;
    let mut delay = Duration::from_millis(20);
    loop {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(last + 1);
        let mut client = shared.client.clone();
        let why = match client.watch(from, Some(opts)).await {
            Ok(mut stream) => {
                delay = Duration::from_millis(20);
                let mut end = End::Broken("the watch stream ended".into());
                while let Some(msg) = stream.next().await {
                    end = match msg {
                        Ok(resp) => match deliver(resp, since, &mut last, tx).await {
                            Some(e) => e,
                            None => continue,
                        },
                        Err(e) => End::Broken(e.to_string()),
                    };
                    break;
                }
                end
            }
            Err(e) if transient(&e) => End::Broken(e.to_string()),
            Err(e) => {
                let _ = tx.send(Err(unavailable(e))).await;
                End::Done
            }
        };
        match why {
            End::Done => return,
            End::Broken(why) => {
                tracing::debug!(
                    prefix = from,
                    revision = last,
                    why,
                    "etcd watch broke; watching again"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Sends the events of one response; `Some` when the watch ended.
async fn deliver(resp: WatchResponse, since: i64, last: &mut i64, tx: &Tx) -> Option<End> {
    if resp.compact_revision() > 0 {
        let gone = StoreError::Gone {
            requested: since.max(*last) as Revision,
            oldest: resp.compact_revision() as Revision,
        };
        let _ = tx.send(Err(gone)).await;
        return Some(End::Done);
    }
    if resp.canceled() {
        return Some(End::Broken(format!("canceled: {}", resp.cancel_reason())));
    }
    for ev in resp.events() {
        let rev = ev.kv().map_or(0, |kv| kv.mod_revision());
        if rev <= *last {
            continue;
        }
        let item = convert::event(ev);
        let bad = item.is_err();
        if tx.send(item).await.is_err() || bad {
            return Some(End::Done);
        }
        *last = rev;
    }
    None
}
