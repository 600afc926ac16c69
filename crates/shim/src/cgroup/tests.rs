use super::*;

#[test]
fn the_cgroup_follows_the_spec_s_path_on_either_layout() {
    let v1 = tempfile::tempdir().unwrap();
    let g = TaskCgroup::at(v1.path(), "/aos/ns/svc").unwrap();
    assert_eq!(
        g.oom_file(),
        v1.path().join("memory/aos/ns/svc/memory.oom_control")
    );
    assert_eq!(g.dir("freezer"), v1.path().join("freezer/aos/ns/svc"));
    let v2 = tempfile::tempdir().unwrap();
    std::fs::write(v2.path().join("cgroup.controllers"), "memory pids\n").unwrap();
    let g = TaskCgroup::at(v2.path(), "aos/ns/svc").unwrap();
    assert_eq!(g.oom_file(), v2.path().join("aos/ns/svc/memory.events"));
    assert_eq!(g.dir("freezer"), v2.path().join("aos/ns/svc"));
    assert_eq!(TaskCgroup::at(v2.path(), "system.slice:aos:svc"), None);
    assert_eq!(TaskCgroup::at(v2.path(), "/"), None);
}

#[test]
fn the_cgroup_of_a_bundle_comes_from_its_spec() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(TaskCgroup::of_bundle(dir.path()), None);
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"linux":{"cgroupsPath":"/aos/ns/svc"}}"#,
    )
    .unwrap();
    let g = TaskCgroup::of_bundle(dir.path()).unwrap();
    assert_eq!(g.path, Path::new("aos/ns/svc"));
    assert_eq!(g.root, Path::new("/sys/fs/cgroup"));
}

#[test]
fn oom_kills_are_read_from_either_cgroup_layout() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("memory.oom_control");
    std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
    assert_eq!(oom_kills(&v1), 2);
    let v2 = dir.path().join("memory.events");
    std::fs::write(&v2, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n").unwrap();
    assert_eq!(oom_kills(&v2), 1);
    assert_eq!(oom_kills(&dir.path().join("gone")), 0);
}

/// A cgroup of this host made for one test, its processes killed and the cgroup removed at
/// the end.
struct Scratch {
    cgroup: TaskCgroup,
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Option<Scratch> {
        let path = format!("aos-shim-test-{}-{name}", std::process::id());
        let cgroup = TaskCgroup::at(Path::new("/sys/fs/cgroup"), &path)?;
        let dir = cgroup.dir("freezer");
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!(
                "skipped: cannot make the cgroup {} ({e}); needs root",
                dir.display()
            );
            return None;
        }
        Some(Scratch { cgroup, dir })
    }

    fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        procs(&self.dir, &mut pids);
        pids
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
            let pids = self.pids();
            if pids.len() == n || Instant::now() > end {
                return pids;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in self.pids() {
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
    let Some(g) = Scratch::new("term") else {
        return;
    };
    let mut sh = g.run("sleep 100 & sleep 100 & wait");
    assert_eq!(g.wait_for(3).len(), 3, "the shell and its two sleeps");
    g.cgroup.signal_all(Signal::SIGTERM).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(sh.wait().unwrap().signal(), Some(15));
    assert_eq!(g.wait_for(0), Vec::<i32>::new(), "the sleeps got it too");
    let state = if g.cgroup.v2 {
        "cgroup.freeze"
    } else {
        "freezer.state"
    };
    let state = std::fs::read_to_string(g.dir.join(state)).unwrap();
    assert!(matches!(state.trim(), "0" | "THAWED"), "{state}");
}

#[test]
fn sigkill_ends_processes_that_ignore_sigterm() {
    let Some(g) = Scratch::new("kill") else {
        return;
    };
    let mut sh = g.run("trap '' TERM; sleep 100 & sleep 100 & wait");
    let before = g.wait_for(3);
    assert_eq!(before.len(), 3);
    g.cgroup.signal_all(Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(g.pids().len(), 3, "SIGTERM is ignored: {before:?}");
    g.cgroup.signal_all(Signal::SIGKILL).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(sh.wait().unwrap().signal(), Some(9));
    assert_eq!(g.wait_for(0), Vec::<i32>::new());
}

#[test]
fn a_cgroup_that_does_not_exist_is_an_error() {
    let g = TaskCgroup::at(Path::new("/sys/fs/cgroup"), "aos-shim-test-none/x").unwrap();
    assert_eq!(
        g.signal_all(Signal::SIGTERM).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}
