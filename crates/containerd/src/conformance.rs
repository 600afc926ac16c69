//! What every `Containers` must do, as one suite: containerd passes it (tests/containerd.rs,
//! with a private containerd) and so does [`crate::fake::FakeContainers`] (its unit test), so
//! that tests written against the fake hold for the real thing.
// A test suite (run by tests of each implementation): a failed unwrap is a failed case.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;

use crate::{Containers, TaskEvent, TaskSpec};

/// What a task's process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Ends at once with this status.
    Exit(u32),
    /// Runs until killed; ignores SIGTERM (as PID 1 without a handler does).
    Sleep,
}

/// How the runtime under test is given tasks.
pub trait Harness: Send + Sync {
    /// A task with this id (and the label `aos.edge/test=yes`) whose process does `what`.
    fn task(&self, id: &str, what: Behavior) -> TaskSpec;
    /// A command for `exec` that ends with this status.
    fn exec_exit(&self, code: u32) -> Vec<String>;
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("the runtime answers within the time")
}

/// Runs every case; ids are prefixed with `prefix` (runtimes share namespaces between runs).
pub async fn run(c: &dyn Containers, h: &dyn Harness, prefix: &str) {
    let id = |n: &str| format!("{prefix}{n}");
    assert!(c.ping().await.is_ok(), "the runtime answers a ping");

    // A task that exits: its status is seen by wait, inspect, list and the event stream.
    let mut events = c.events().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = id("quick");
    let pid = c.run(&h.task(&quick, Behavior::Exit(3))).await.unwrap();
    assert!(pid > 0);
    assert_eq!(within(20, c.wait(&quick)).await.unwrap(), 3);
    let ev = within(20, async {
        loop {
            let ev = events.next().await.expect("the event stream stays open");
            if ev.id() == quick {
                return ev;
            }
        }
    })
    .await;
    assert_eq!(
        ev,
        TaskEvent::Exited {
            id: quick.clone(),
            pid,
            status: 3
        }
    );
    let seen = c
        .inspect(&quick)
        .await
        .unwrap()
        .expect("the container stays");
    assert_eq!(
        seen.task.map(|t| (t.running, t.exit_status)),
        Some((false, 3))
    );
    let listed = c.list().await.unwrap();
    let mine = listed.iter().find(|t| t.id == quick).expect("listed");
    assert_eq!(mine.labels["aos.edge/test"], "yes");

    // A task that runs: exec in it, kill it, remove it twice; nothing is left.
    let sleeper = id("sleeper");
    c.run(&h.task(&sleeper, Behavior::Sleep)).await.unwrap();
    let state = c.inspect(&sleeper).await.unwrap().unwrap().task.unwrap();
    assert!(state.running);
    let args = h.exec_exit(7);
    assert_eq!(
        within(20, c.exec(&sleeper, "probe-1", &args, &[], (0, 0)))
            .await
            .unwrap(),
        7
    );
    c.kill(&sleeper, 15).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = c.inspect(&sleeper).await.unwrap().unwrap().task.unwrap();
    assert!(still.running, "SIGTERM without a handler changes nothing");
    c.kill(&sleeper, 9).await.unwrap();
    assert_eq!(within(20, c.wait(&sleeper)).await.unwrap(), 128 + 9);
    for n in [&quick, &sleeper] {
        c.remove(n).await.unwrap();
        c.remove(n).await.unwrap();
        assert!(c.inspect(n).await.unwrap().is_none());
    }
    assert!(!c
        .list()
        .await
        .unwrap()
        .iter()
        .any(|t| t.id.starts_with(prefix)));
    assert!(c.inspect(&id("never")).await.unwrap().is_none());
    c.release_idle().await.unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeContainers;
    use crate::{TaskIo, TaskSpec};

    struct FakeHarness;

    impl Harness for FakeHarness {
        fn task(&self, id: &str, what: Behavior) -> TaskSpec {
            let args = match what {
                Behavior::Exit(n) => vec!["exit".to_string(), n.to_string()],
                Behavior::Sleep => vec!["sleep".to_string()],
            };
            let mut spec = oci_spec::runtime::Spec::default();
            if let Some(p) = spec.process_mut() {
                p.set_args(Some(args));
            }
            TaskSpec {
                id: id.into(),
                spec,
                rootfs: vec![],
                io: TaskIo::Files {
                    stdout: "/dev/null".into(),
                    stderr: "/dev/null".into(),
                },
                labels: [("aos.edge/test".to_string(), "yes".to_string())].into(),
            }
        }

        fn exec_exit(&self, code: u32) -> Vec<String> {
            vec!["exit".into(), code.to_string()]
        }
    }

    #[tokio::test]
    async fn the_fake_passes_the_conformance_suite() {
        run(&FakeContainers::new(), &FakeHarness, "t-").await;
    }
}
