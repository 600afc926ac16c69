//! `signal_all` on this host's real cgroups (whichever layout it has): each test makes a
//! cgroup of its own, runs shells in it, and removes it, pass or fail. Needs root.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aos_cgroups::Cgroups;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A cgroup of this host made for one test, its processes killed and the cgroup removed at
/// the end.
struct Scratch {
    cgroups: Cgroups,
    path: String,
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let cgroups = Cgroups::host();
        let path = format!("aos-cgroups-test-{}-{name}", std::process::id());
        let dir = cgroups.dir("freezer", &path);
        if let Err(e) = std::fs::create_dir(&dir) {
            panic!("cannot make the cgroup {} ({e}); needs root", dir.display());
        }
        Scratch { cgroups, path, dir }
    }

    /// Starts a shell that moves itself into the cgroup, then runs `script` there.
    fn run(&self, script: &str) -> std::process::Child {
        let procs = self.dir.join("cgroup.procs");
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {}; {script}", procs.display()))
            .spawn()
            .unwrap()
    }

    /// Waits until the cgroup holds `n` processes; their pids.
    fn wait_for(&self, n: usize) -> Vec<i32> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.cgroups.pids(&self.path);
            if pids.len() == n || Instant::now() > end {
                return pids;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in self.cgroups.pids(&self.path) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let end = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn every_process_of_the_cgroup_gets_the_signal_and_a_thawed_cgroup_is_left() {
    let g = Scratch::new("term");
    let mut sh = g.run("sleep 100 & sleep 100 & wait");
    assert_eq!(g.wait_for(3).len(), 3, "the shell and its two sleeps");
    g.cgroups.signal_all(&g.path, Signal::SIGTERM).unwrap();
    assert_eq!(sh.wait().unwrap().signal(), Some(15));
    assert_eq!(g.wait_for(0), Vec::<i32>::new(), "the sleeps got it too");
    assert_eq!(g.cgroups.frozen(&g.path), Some(false));
}

#[test]
fn sigkill_ends_processes_that_ignore_sigterm() {
    let g = Scratch::new("kill");
    let mut sh = g.run("trap '' TERM; sleep 100 & sleep 100 & wait");
    let before = g.wait_for(3);
    assert_eq!(before.len(), 3);
    g.cgroups.signal_all(&g.path, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        g.cgroups.pids(&g.path).len(),
        3,
        "SIGTERM is ignored: {before:?}"
    );
    g.cgroups.signal_all(&g.path, Signal::SIGKILL).unwrap();
    assert_eq!(sh.wait().unwrap().signal(), Some(9));
    assert_eq!(g.wait_for(0), Vec::<i32>::new());
}

#[test]
fn a_cgroup_that_does_not_exist_is_an_error() {
    let err = Cgroups::host()
        .signal_all("aos-cgroups-test-none/x", Signal::SIGTERM)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}
