use super::*;

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn a_v1_host_is_read_per_controller() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("memory")).unwrap();
    put(t.path(), "cpuacct/aos/x/cpuacct.usage", "123456\n");
    put(t.path(), "memory/aos/x/memory.usage_in_bytes", "10000\n");
    put(
        t.path(),
        "memory/aos/x/memory.stat",
        "cache 5\ntotal_inactive_file 4000\n",
    );
    put(t.path(), "cpu/aos/x/cpu.cfs_quota_us", "50000\n");
    put(t.path(), "cpu/aos/x/cpu.cfs_period_us", "100000\n");
    put(
        t.path(),
        "memory/aos/x/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    let c = Cgroups::detect(t.path());
    assert_eq!(c.layout, Layout::V1);
    assert_eq!(c.cpu_time_ns("/aos/x"), Some(123456));
    assert_eq!(c.memory_bytes("/aos/x"), Some(6000));
    assert_eq!(c.cpu_quota("/aos/x"), Some((50000, 100000)));
    assert_eq!(c.oom_kills("/aos/x"), 2);
    assert_eq!(c.oom_kills("/aos/none"), 0);
    assert_eq!(
        c.memory_limit_file("/aos/x"),
        t.path().join("memory/aos/x/memory.limit_in_bytes")
    );
}

#[test]
fn a_v2_host_is_read_from_the_unified_tree() {
    let t = tempfile::tempdir().unwrap();
    put(t.path(), "cgroup.controllers", "cpu memory pids\n");
    put(t.path(), "aos/x/cpu.stat", "usage_usec 42\nuser_usec 40\n");
    put(t.path(), "aos/x/memory.current", "8192\n");
    put(
        t.path(),
        "aos/x/memory.stat",
        "anon 4096\ninactive_file 1000\n",
    );
    put(t.path(), "aos/x/cpu.max", "max 100000\n");
    put(
        t.path(),
        "aos/x/memory.events",
        "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    );
    let c = Cgroups::detect(t.path());
    assert_eq!(c.layout, Layout::V2);
    assert_eq!(c.cpu_time_ns("/aos/x"), Some(42_000));
    assert_eq!(c.memory_bytes("/aos/x"), Some(7192));
    assert_eq!(c.cpu_quota("/aos/x"), Some((-1, 100000)));
    assert_eq!(c.oom_kills("/aos/x"), 1);
    assert_eq!(c.pids_limit_file("/aos/x"), t.path().join("aos/x/pids.max"));
}

#[test]
fn a_cgroup_s_directory_follows_the_layout_and_a_spec_path_is_made_relative() {
    let v1 = tempfile::tempdir().unwrap();
    let c = Cgroups::detect(v1.path());
    assert_eq!(
        c.dir("freezer", "/aos/ns/svc"),
        v1.path().join("freezer/aos/ns/svc")
    );
    let v2 = tempfile::tempdir().unwrap();
    put(v2.path(), "cgroup.controllers", "memory pids\n");
    let c = Cgroups::detect(v2.path());
    assert_eq!(c.dir("freezer", "aos/ns/svc"), v2.path().join("aos/ns/svc"));
    assert_eq!(relative_path("/aos/ns/svc"), Some("aos/ns/svc"));
    assert_eq!(relative_path("system.slice:aos:svc"), None);
    assert_eq!(relative_path("/"), None);
    assert_eq!(Cgroups::host().root, Path::new(HOST_ROOT));
}

#[test]
fn a_tree_is_removed_where_empty_and_kept_where_in_use() {
    let t = tempfile::tempdir().unwrap();
    for d in ["memory/ns/a/sub", "memory/ns/b", "pids/ns/a"] {
        std::fs::create_dir_all(t.path().join(d)).unwrap();
    }
    // A file stands for a process: its directory cannot be removed.
    put(t.path(), "memory/ns/b/cgroup.procs", "42\n");
    let c = Cgroups::detect(t.path());
    c.remove_tree_if_empty("/ns");
    assert!(!t.path().join("memory/ns/a").exists());
    assert!(!t.path().join("pids/ns").exists());
    assert!(t.path().join("memory/ns/b").exists(), "in use, kept");
    c.remove_tree_if_empty("/");
    assert!(
        t.path().join("memory/ns").exists(),
        "the root is never removed"
    );
    std::fs::remove_file(t.path().join("memory/ns/b/cgroup.procs")).unwrap();
    c.remove_if_empty("/ns/b");
    c.remove_if_empty("/ns");
    assert!(!t.path().join("memory/ns").exists());
}
