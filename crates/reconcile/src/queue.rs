//! The keyed work queue: each key at most once in the ready list, never handed out while it
//! runs (it is marked dirty and handed out again when done), and delayed entries for requeues
//! and backoff.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use tokio::time::Instant;

#[derive(Default, Debug)]
pub(crate) struct Queue {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    dirty: HashSet<String>,
    delayed: BTreeSet<(Instant, String)>,
    due: HashMap<String, Instant>,
}

impl Queue {
    /// Wants the key reconciled now.
    pub fn add(&mut self, key: &str) {
        if self.running.contains(key) {
            self.dirty.insert(key.to_string());
            return;
        }
        self.cancel_delay(key);
        if self.queued.insert(key.to_string()) {
            self.ready.push_back(key.to_string());
        }
    }

    /// Wants the key reconciled at `at` (the earlier wins if it is already waiting).
    pub fn add_after(&mut self, key: &str, at: Instant) {
        if self.queued.contains(key) || self.dirty.contains(key) {
            return;
        }
        if let Some(prev) = self.due.get(key) {
            if *prev <= at {
                return;
            }
            self.delayed.remove(&(*prev, key.to_string()));
        }
        self.due.insert(key.to_string(), at);
        self.delayed.insert((at, key.to_string()));
    }

    fn cancel_delay(&mut self, key: &str) {
        if let Some(at) = self.due.remove(key) {
            self.delayed.remove(&(at, key.to_string()));
        }
    }

    /// When the next delayed key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.first().map(|(at, _)| *at)
    }

    /// Moves every delayed key due by `now` to the ready list.
    pub fn promote_due(&mut self, now: Instant) {
        while let Some((at, key)) = self.delayed.first().cloned() {
            if at > now {
                break;
            }
            self.delayed.pop_first();
            self.due.remove(&key);
            self.add(&key);
        }
    }

    /// The next key to reconcile; it counts as running until [`Queue::done`].
    pub fn pop(&mut self) -> Option<String> {
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        self.cancel_delay(&key);
        self.running.insert(key.clone());
        Some(key)
    }

    /// The reconcile of `key` ended; if it changed meanwhile it is queued again.
    pub fn done(&mut self, key: &str) {
        self.running.remove(key);
        if self.dirty.remove(key) {
            self.add(key);
        }
    }

    /// Keys waiting: due now, or delayed.
    pub fn depth(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_key_is_queued_once_however_often_it_is_added() {
        let mut q = Queue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop().as_deref(), Some("b"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_running_key_is_not_handed_out_again_until_done() {
        let mut q = Queue::default();
        q.add("a");
        assert_eq!(q.pop().as_deref(), Some("a"));
        q.add("a");
        assert_eq!(q.pop(), None, "a is still running");
        q.done("a");
        assert_eq!(
            q.pop().as_deref(),
            Some("a"),
            "the change during the run is not lost"
        );
        q.done("a");
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn delayed_keys_come_due_in_time_order_and_earlier_wins() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_after("a", t0 + Duration::from_secs(5));
        q.add_after("b", t0 + Duration::from_secs(2));
        q.add_after("a", t0 + Duration::from_secs(1));
        q.add_after("b", t0 + Duration::from_secs(9));
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        q.promote_due(t0 + Duration::from_secs(1));
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop(), None);
        q.promote_due(t0 + Duration::from_secs(2));
        assert_eq!(q.pop().as_deref(), Some("b"));
        assert_eq!(q.next_due(), None);
    }

    #[test]
    fn an_immediate_add_supersedes_a_delay() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_after("a", t0 + Duration::from_secs(5));
        q.add("a");
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.running(), 1);
    }
}
