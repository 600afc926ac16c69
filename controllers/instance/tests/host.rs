//! The node as the host of instances ([`RealHost`]) passes the `InstanceHost` conformance
//! suite that the fake passes: a real layer store with a squashfs layer (loop-mounted), real
//! volumes (ext4 images, loop-mounted), the cgroup filesystem. Needs root; leaves no mount.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use aos_cgroups::Cgroups;
use aos_image::layerstore::{mounts_under, LayerRecord, LayerStore};
use aos_instance_controller::host::conformance::{run, Harness};
use aos_instance_controller::host::real::RealHost;
use aos_instance_controller::host::InstanceHost;

struct Real {
    host: RealHost,
    dir: std::path::PathBuf,
    added: Mutex<Vec<String>>,
}

impl Harness for Real {
    fn host(&self) -> &dyn InstanceHost {
        &self.host
    }

    fn add_layer(&self) -> String {
        let src = self.dir.join("layer-src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/greeting"), b"hello\n").unwrap();
        let image = self.dir.join("layer.sqfs");
        let out = std::process::Command::new("mksquashfs")
            .arg(&src)
            .arg(&image)
            .args(["-noappend", "-quiet", "-no-progress"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let diff = format!("sha256:{}", "ab".repeat(32));
        let record = LayerRecord {
            digest: diff.clone(),
            diff_id: diff.clone(),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            size: 0,
            unpacked_size: 6,
            image_size: std::fs::metadata(&image).unwrap().len(),
            at_rest_digest: String::new(),
            files: 1,
            implicit_dirs: Vec::new(),
            index: Default::default(),
        };
        self.host.layers.publish(&image, &record).unwrap();
        self.added.lock().unwrap().push(diff.clone());
        diff
    }
}

#[test]
fn the_node_passes_the_instance_host_conformance_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let layers = LayerStore::open(dir.join("images")).unwrap();
    let real = Real {
        host: RealHost {
            layers,
            run_dir: dir.join("run"),
            data_dir: dir.join("instances"),
            cgroup_parent: format!("aos-test-host-{}", std::process::id()),
            host_root: "/".into(),
            host_binds: Vec::new(),
            resolv_conf: "/etc/resolv.conf".into(),
            resources: Default::default(),
            cgroups: Cgroups::host(),
        },
        dir: dir.clone(),
        added: Mutex::new(Vec::new()),
    };
    run(&real, "conf-");
    let state = real.host.paths("conf-a");
    assert!(!state.state_file.exists(), "removed with the instance");
    for d in real.added.lock().unwrap().iter() {
        real.host.layers.remove_layer(d).unwrap();
    }
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
}
