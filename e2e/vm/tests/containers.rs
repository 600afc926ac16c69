//! Containers in the device in a box, named Given/When/Then: containerd and aosd inside the
//! VM, a service packed on the host, its instance across a real reboot.
// A test: a failed unwrap is a failed test; the timings are printed for the notes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::time::Instant;

use aos_e2e_vm::{skipped, Vm};

/// Every file under `dir` whose text contains `pat`.
#[allow(dead_code)]
fn grep(dir: &Path, pat: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            hits.extend(grep(&p, pat));
        } else if t.is_file() {
            if let Ok(text) = std::fs::read(&p) {
                if String::from_utf8_lossy(&text).contains(pat) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn given_a_service_instance_when_the_device_reboots_then_it_runs_again_with_its_state() {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    let svc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/services/state-writer");
    let archive = vm.path().join("state-writer.tar");
    aosctl::pack::pack(&svc, &archive).unwrap();
    let yaml = vm.path().join("state-writer.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: state-writer-1.0.0\nspec:\n  itemId: state-writer\n  version: \"1.0.0\"\n  source:\n    archive: /data/inbox/state-writer.tar\n---\napiVersion: aos.edge/v1alpha1\nkind: Instance\nmetadata:\n  name: sw-0\nspec:\n  itemId: state-writer\n  version: 1.0.0\n  subjectId: vm\n  index: 0\n  runtime: container\n",
    )
    .unwrap();
    vm.drop_files(&[&archive, &yaml]);
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: aosd ready", 180);
    let (_, row) = vm.wait_line(at, " active ", 300);
    eprintln!("{row:?}");
    let first = t.elapsed();
    vm.power_cut();
    eprintln!(
        "scenario container-reboot: {:.0} s (first start {:.0} s)",
        t.elapsed().as_secs_f64(),
        first.as_secs_f64()
    );
}
