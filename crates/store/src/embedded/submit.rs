//! Handing writes to the embedded store's writer thread and waiting for their commit: one at a
//! time, or a batch queued at once so that one group commit takes it in order.

use tokio::sync::oneshot;

use super::writer::Request;
use super::Embedded;
use crate::plan::{Op, Reply};
use crate::StoreError;

impl Embedded {
    /// Hands one write to the writer and waits for its commit.
    pub(super) async fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        self.submit_all(vec![op])
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Internal("a write went unanswered".into())))
    }

    /// Queues `ops` for the writer all at once, in order (so that its group commit takes them
    /// together and in that order), then waits for every reply.
    pub(super) async fn submit_all(&self, ops: Vec<Op>) -> Vec<Result<Reply, StoreError>> {
        let n = ops.len();
        let Some(tx) = self.inner.tx.clone() else {
            return (0..n)
                .map(|_| Err(StoreError::Unavailable("store is closed".into())))
                .collect();
        };
        let stopped = || StoreError::Unavailable("store writer has stopped".into());
        // Waiting on the blocking pool (not on the writer thread directly) tells a paused tokio
        // clock that work is in flight, so tests with `time::pause` do not jump ahead of a write.
        tokio::task::spawn_blocking(move || {
            let replies: Vec<_> = ops
                .into_iter()
                .map(|op| {
                    let (reply, rx) = oneshot::channel();
                    tx.send(Request { op, reply }).ok().map(|()| rx)
                })
                .collect();
            replies
                .into_iter()
                .map(|rx| {
                    rx.ok_or_else(stopped)?
                        .blocking_recv()
                        .map_err(|_| stopped())?
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            let e = StoreError::Internal(format!("store write task failed: {e}"));
            (0..n).map(|_| Err(e.clone())).collect()
        })
    }
}
