//! The OS runtimes through aosd and aosctl. Boot, on a machine in a box (`runtimes.boot.simulate`):
//! a partition image packed with `aosctl pack --boot`, installed as a component Item from the
//! archive, written to the inactive slot, booted once through BootNext, kept after its
//! probation; an unhealthy one rolled back; the tables and the node's runtimes say so. Rootfs:
//! the runtime reports the version its root holds and refuses a component of another kind.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use aos_e2e::{Aosd, AosdOptions};

const CONFIG: &str = "[runtimes.boot]\nenabled = true\nsimulate = true\n\
[runtimes.boot.health]\nprobation_secs = 1\ninterval_secs = 1\ntimeout_secs = 5\n";
const SLOT: &str = "e2e-node";

fn component(aosd: &Aosd, version: &str, healthy: bool) {
    let (archive, out) = aosd.pack_boot(version, healthy, 1 << 20);
    assert!(out.contains("boot component sha256:"), "{out}");
    let yaml = format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: os-{version}\nspec:\n  itemId: os\n  version: \"{version}\"\n  type: component\n  source:\n    archive: {}\n---\napiVersion: aos.edge/v1alpha1\nkind: BootSlot\nmetadata:\n  name: {SLOT}\nspec:\n  item:\n    itemId: os\n    version: \"{version}\"\n",
        archive.display()
    );
    let path = aosd.path().join(format!("os-{version}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    aosd.ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn a_packed_boot_component_is_installed_in_the_other_slot_and_kept_after_probation() {
    let aosd = Aosd::start_with(AosdOptions {
        config: Some(CONFIG.into()),
        ..Default::default()
    });
    // The Node advertises the boot runtime once its controller has run.
    aosd.until("node", SLOT, 30, |v| {
        v["status"]["runtimes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["type"] == "boot"))
    });
    let idle = aosd.until("bootslot", SLOT, 30, |v| v["status"]["phase"] == "Idle");
    assert_eq!(idle["status"]["main"], "a");

    component(&aosd, "2.0", true);
    let done = aosd.until("bootslot", SLOT, 60, |v| {
        v["status"]["main"] == "b" && v["status"]["phase"] == "Idle"
    });
    assert_eq!(done["status"]["current"], "b");
    assert_eq!(done["status"]["slots"][1]["version"], "2.0");
    let steps: Vec<_> = done["status"]["update"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        steps,
        ["write", "verify", "reboot", "health", "commit", "committed"]
    );
    let table = aosd.ok(&["get", "bootslots"]);
    let row: Vec<_> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        [SLOT, "os:2.0", "Idle", "b", "b", "2.0", "<none>"],
        "{table}"
    );

    // An unhealthy update goes back to b and says why.
    component(&aosd, "3.0", false);
    let failed = aosd.until("bootslot", SLOT, 60, |v| v["status"]["phase"] == "Failed");
    assert_eq!(failed["status"]["main"], "b");
    assert_eq!(failed["status"]["current"], "b");
    let ready = aos_e2e::condition(&failed, "Ready");
    assert_eq!(ready["reason"], "Unhealthy", "{ready}");
}

#[test]
fn the_rootfs_runtime_reports_its_root_and_refuses_a_component_of_another_kind() {
    let host = tempfile::tempdir().unwrap();
    let root = host.path().join("root");
    std::fs::create_dir_all(root.join("etc/aos")).unwrap();
    std::fs::write(root.join("etc/aos/version"), "7.1\n").unwrap();
    let config = format!(
        "[runtimes.rootfs]\nenabled = true\nroot_dir = \"{}\"\nwork_dir = \"{}\"\n",
        root.display(),
        host.path().join("work").display()
    );
    let aosd = Aosd::start_with(AosdOptions {
        config: Some(config),
        ..Default::default()
    });
    let s = aosd.until("rootfsslot", SLOT, 30, |v| v["status"]["phase"] == "Idle");
    assert_eq!(s["status"]["installedVersion"], "7.1");
    let table = aosd.ok(&["get", "rootfsslots"]);
    let row: Vec<_> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..6],
        [SLOT, "<none>", "Idle", "7.1", "<none>", "none"],
        "{table}"
    );
    // A boot component is not a rootfs image: refused, nothing staged.
    let (archive, _) = aosd.pack_boot("8.0", true, 4096);
    let yaml = format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: os-8\nspec:\n  itemId: os\n  version: \"8.0\"\n  type: component\n  source:\n    archive: {}\n---\napiVersion: aos.edge/v1alpha1\nkind: RootfsSlot\nmetadata:\n  name: {SLOT}\nspec:\n  item:\n    itemId: os\n    version: \"8.0\"\n",
        archive.display()
    );
    let path = aosd.path().join("os-8.yaml");
    std::fs::write(&path, yaml).unwrap();
    aosd.ok(&["apply", "-f", path.to_str().unwrap()]);
    let s = aosd.until("rootfsslot", SLOT, 30, |v| v["status"]["phase"] == "Failed");
    let ready = aos_e2e::condition(&s, "Ready");
    assert_eq!(ready["reason"], "InvalidImage", "{ready}");
    assert!(!host.path().join("work/image.squashfs").exists());
    assert!(!host.path().join("work/do_update").exists());
}
