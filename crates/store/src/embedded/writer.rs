//! The one writer thread of the embedded store: it commits whatever has queued up in one durable
//! transaction (group commit) and acknowledges each write only after that commit. When the file
//! fails under it (a full disk, an I/O error), redb refuses every later write until the file is
//! opened again: the writer then gives back the space it kept in reserve, reopens the file, and
//! retries every second until it works, failing writes with `Unavailable` meanwhile and saying so
//! in the store's health.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use redb::{ReadableTable, WriteTransaction};
use tokio::sync::{broadcast, oneshot};

use super::{record, Shared, COMPACTED, EVENTS, EVENT_BYTES, META, OBJECTS, REVISION};
use crate::plan::{key, plan, Change, Op, Reply};
use crate::{EventType, StoreError, WatchEvent};

pub(super) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// A failed commit: of the file (fatal until reopened) or of the requests only.
pub(super) enum Failed {
    File(String),
    Requests(StoreError),
}

/// redb's errors that leave the file unusable until it is opened again.
pub(super) fn failed(e: impl Into<redb::Error>) -> Failed {
    let e: redb::Error = e.into();
    let msg = e.to_string();
    match e {
        redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
            Failed::File(msg)
        }
        _ => Failed::Requests(StoreError::Internal(msg)),
    }
}

pub(super) struct Writer {
    pub shared: Arc<Shared>,
    pub events: broadcast::Sender<Arc<WatchEvent>>,
    pub limit: u64,
    pub byte_limit: u64,
    pub max_batch: usize,
    pub max_object: usize,
}

type BatchResult = (Vec<Result<Reply, StoreError>>, Vec<WatchEvent>);

impl Writer {
    pub fn run(self, rx: mpsc::Receiver<Request>) {
        let mut last_reserve_check = Instant::now();
        loop {
            // While the file is down, look again every second even without writes.
            let first = if self.shared.is_open() {
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => return,
                }
            } else {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.shared.reopen();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if !self.shared.is_open() && !self.shared.reopen() {
                let e = self.shared.unavailable();
                for req in batch {
                    let _ = req.reply.send(Err(e.clone()));
                }
                continue;
            }
            match self.commit(&batch) {
                Ok((replies, events)) => {
                    for ev in events {
                        let _ = self.events.send(Arc::new(ev));
                    }
                    for (req, reply) in batch.into_iter().zip(replies) {
                        let _ = req.reply.send(reply);
                    }
                    if last_reserve_check.elapsed() > Duration::from_secs(10) {
                        last_reserve_check = Instant::now();
                        self.shared.ensure_reserve();
                    }
                }
                Err(Failed::Requests(e)) => {
                    tracing::error!(error = %e, writes = batch.len(), "store commit failed");
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
                Err(Failed::File(msg)) => {
                    tracing::error!(error = %msg, writes = batch.len(), "the store file failed; reopening it");
                    self.shared.fail(&msg);
                    let e = self.shared.unavailable();
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                    self.shared.reopen();
                }
            }
        }
    }

    fn commit(&self, batch: &[Request]) -> Result<BatchResult, Failed> {
        let db = self.shared.db().map_err(Failed::Requests)?;
        let txn = db.begin_write().map_err(failed)?;
        let (replies, events) = self.apply_batch(&txn, batch)?;
        if events.is_empty() {
            txn.abort().map_err(failed)?;
        } else {
            txn.commit().map_err(failed)?;
        }
        Ok((replies, events))
    }

    fn apply_batch(
        &self,
        txn: &WriteTransaction,
        batch: &[Request],
    ) -> Result<BatchResult, Failed> {
        let mut replies = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut objects = txn.open_table(OBJECTS).map_err(failed)?;
        let mut log = txn.open_table(EVENTS).map_err(failed)?;
        let mut meta = txn.open_table(META).map_err(failed)?;
        let get = |meta: &redb::Table<&str, u64>, k: &str| -> Result<u64, Failed> {
            Ok(meta.get(k).map_err(failed)?.map(|v| v.value()).unwrap_or(0))
        };
        let mut rev = get(&meta, REVISION)?;
        let mut event_bytes = get(&meta, EVENT_BYTES)?;
        let start_rev = rev;
        for req in batch {
            let k = key(req.op.kind(), req.op.name());
            let current = match objects.get(k.as_str()).map_err(failed)? {
                Some(v) => match record::object(&k, v.value()) {
                    Ok((o, _)) => Some(o),
                    Err(d) => {
                        replies.push(Err(self.shared.damaged(&k, &d)));
                        continue;
                    }
                },
                None => None,
            };
            let planned = match plan(&req.op, current, rev + 1, Utc::now()) {
                Ok(p) => p,
                Err(e) => {
                    replies.push(Err(e));
                    continue;
                }
            };
            let event = match planned.change {
                Change::None => None,
                Change::Put(obj, type_) => {
                    let json = serde_json::to_vec(&obj)
                        .map_err(|e| Failed::Requests(StoreError::Internal(e.to_string())))?;
                    if json.len() > self.max_object {
                        replies.push(Err(StoreError::too_large(json.len(), self.max_object)));
                        continue;
                    }
                    objects
                        .insert(k.as_str(), record::seal(&json).as_slice())
                        .map_err(failed)?;
                    Some((type_, obj))
                }
                Change::Remove(obj) => {
                    objects.remove(k.as_str()).map_err(failed)?;
                    Some((EventType::Deleted, obj))
                }
            };
            if let Some((type_, object)) = event {
                rev += 1;
                let ev = WatchEvent {
                    type_,
                    revision: rev,
                    object,
                };
                let json = serde_json::to_vec(&ev)
                    .map_err(|e| Failed::Requests(StoreError::Internal(e.to_string())))?;
                let sealed = record::seal(&json);
                event_bytes += sealed.len() as u64;
                log.insert(rev, sealed.as_slice()).map_err(failed)?;
                events.push(ev);
            }
            replies.push(Ok(planned.reply));
        }
        if rev != start_rev {
            meta.insert(REVISION, rev).map_err(failed)?;
            let compacted = get(&meta, COMPACTED)?;
            // Trim in steps of a tenth, not on every write: by count, and by bytes (events
            // carry whole objects).
            let over_count = rev > compacted + self.limit + self.limit / 10;
            if over_count || event_bytes > self.byte_limit {
                let mut cut = compacted;
                let mut left = event_bytes;
                for entry in log.range(compacted + 1..).map_err(failed)? {
                    let (r, v) = entry.map_err(failed)?;
                    let count_ok = rev - r.value() <= self.limit;
                    if count_ok && left <= self.byte_limit - self.byte_limit / 10 {
                        break;
                    }
                    left = left.saturating_sub(v.value().len() as u64);
                    cut = r.value();
                }
                log.retain_in(..=cut, |_, _| false).map_err(failed)?;
                meta.insert(COMPACTED, cut).map_err(failed)?;
                event_bytes = left;
            }
            meta.insert(EVENT_BYTES, event_bytes).map_err(failed)?;
        }
        Ok((replies, events))
    }
}
