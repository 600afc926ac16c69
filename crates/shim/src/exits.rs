//! Exit statuses of the shim's children. The shim is a subreaper and the shim crate reaps every
//! child (`waitpid(-1)`) and broadcasts what it reaped; this module owns the one subscription
//! and hands each exit to whoever expects that pid: a runc command the shim runs, a task's
//! first process, an exec. An exit can be reaped before its pid is known (a task that ends at
//! once), so exits nobody expects yet are kept for a while.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use containerd_shim::monitor::{Subject, Topic};
use tokio::sync::oneshot;

/// Exits of pids nobody expected are kept, newest last, up to this many: grandchildren
/// reparented to the shim end up here too, and would otherwise pile up.
const KEPT: usize = 512;

#[derive(Default)]
struct Inner {
    waiting: HashMap<i32, oneshot::Sender<i32>>,
    early: VecDeque<(i32, i32)>,
}

/// Where reaped exits go.
#[derive(Default)]
pub struct Exits {
    inner: Mutex<Inner>,
}

impl Exits {
    /// Subscribes to the shim crate's reaper; exits reaped from now on are dispatched.
    pub async fn start() -> Result<Arc<Exits>, containerd_shim::Error> {
        let mut sub = containerd_shim::asynchronous::monitor::monitor_subscribe(Topic::Pid).await?;
        let exits = Arc::new(Exits::default());
        let weak = Arc::downgrade(&exits);
        tokio::spawn(async move {
            while let Some(ev) = sub.rx.recv().await {
                let Some(exits) = weak.upgrade() else { return };
                if let Subject::Pid(pid) = ev.subject {
                    exits.reaped(pid, ev.exit_code);
                }
            }
        });
        Ok(exits)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-changed: take them as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reaped(&self, pid: i32, code: i32) {
        let mut inner = self.lock();
        match inner.waiting.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(code);
            }
            None => {
                if inner.early.len() >= KEPT {
                    inner.early.pop_front();
                }
                inner.early.push_back((pid, code));
            }
        }
    }

    /// The exit status of `pid` once it is reaped (at once if it was already).
    pub fn expect(&self, pid: u32) -> oneshot::Receiver<i32> {
        let pid = pid as i32;
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if let Some(i) = inner.early.iter().rposition(|(p, _)| *p == pid) {
            if let Some((_, code)) = inner.early.remove(i) {
                let _ = tx.send(code);
                return rx;
            }
        }
        inner.waiting.insert(pid, tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_reaped_before_it_is_expected_is_still_handed_over() {
        let exits = Exits::default();
        exits.reaped(42, 3);
        assert_eq!(exits.expect(42).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn an_expected_exit_reaches_its_waiter_and_only_it() {
        let exits = Exits::default();
        let a = exits.expect(7);
        let b = exits.expect(8);
        exits.reaped(7, 137);
        assert_eq!(a.await.unwrap(), 137);
        exits.reaped(8, 0);
        assert_eq!(b.await.unwrap(), 0);
    }

    #[test]
    fn exits_nobody_expects_are_bounded() {
        let exits = Exits::default();
        for pid in 0..(KEPT as i32 + 10) {
            exits.reaped(pid, 0);
        }
        assert_eq!(exits.lock().early.len(), KEPT);
        assert_eq!(exits.lock().early.front().map(|e| e.0), Some(10));
    }
}
