//! What every [`InstanceHost`] must do: the node itself passes it as root against a real layer
//! store, loop devices and the cgroup filesystem (controllers/instance/tests/host.rs), and so
//! does [`super::fake::FakeHost`].
// A test suite (run by tests of each implementation): a failed unwrap is a failed case.
#![allow(clippy::unwrap_used)]

use super::{InstanceHost, Preparation};
use crate::resources::Granted;
use crate::rootfs::TopLayer;
use crate::InstanceError;
use aos_api::itemconfig::RequestedResource;

/// A host under test and a way to make a layer exist on it.
pub trait Harness {
    /// The host under test.
    fn host(&self) -> &dyn InstanceHost;
    /// Makes a layer with one file exist on the host; returns its diff id.
    fn add_layer(&self) -> String;
}

const ABSENT: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000aa";

/// Runs every case; instance names start with `prefix`.
pub fn run(h: &dyn Harness, prefix: &str) {
    let host = h.host();
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    assert!(host.layer(ABSENT).is_none(), "an absent layer has no facts");
    let diff = h.add_layer();
    let facts = host.layer(&diff).expect("an added layer has facts");

    let (pa, pb) = (host.paths(&a), host.paths(&b));
    assert_ne!(pa, pb, "two instances, two sets of files");
    assert_eq!(pa, host.paths(&a), "paths are stable");
    for p in [&pa.log_dir, &pa.state_file] {
        assert!(
            !p.starts_with(&pa.storage_dir),
            "{} is outside storage",
            p.display()
        );
    }
    assert!(pa.cgroups_path.ends_with(&a), "{}", pa.cgroups_path);

    assert_eq!(host.grant(&[]).unwrap(), Granted::default());
    let wanted = [RequestedResource {
        name: format!("{prefix}undeclared"),
        mode: "rw".into(),
    }];
    assert!(matches!(
        host.grant(&wanted),
        Err(InstanceError::ResourceMissing(_))
    ));

    let top = TopLayer {
        hostname: a.clone(),
        ..TopLayer::default()
    };
    let stack = |d: &str| vec![(d.to_string(), facts.stack_layer())];
    let missing = stack(ABSENT);
    let prep = |layers| Preparation {
        name: &a,
        uid: 4242,
        gid: 4242,
        volume: Some(16 << 20),
        layers,
        host_base: false,
        top: &top,
    };
    let e = host.prepare(&prep(&missing)).unwrap_err();
    assert!(matches!(e, InstanceError::LayerMissing(_)), "{e}");
    let layers = stack(&diff);
    let mount = host.prepare(&prep(&layers)).unwrap();
    assert_eq!(mount.type_, "overlay");
    let lower = mount.options.join(",");
    assert!(
        lower.contains(&facts.root.display().to_string()),
        "the layer is in the rootfs: {lower}"
    );
    let again = host.prepare(&prep(&layers)).unwrap();
    assert_eq!(mount, again, "preparing again makes the same rootfs");

    assert_eq!(host.oom_kills(&a), 0, "no task, no OOM kill");
    let _ = host.sample(&a);
    host.clear_run(&a).unwrap();
    host.clear_run(&a).unwrap();
    for _ in 0..2 {
        host.remove(&a).unwrap();
    }
    host.remove(&b).unwrap();
    host.prepare(&prep(&layers)).unwrap();
    host.remove(&a).unwrap();
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeHost;
    use super::*;

    struct Fake(FakeHost);

    impl Harness for Fake {
        fn host(&self) -> &dyn InstanceHost {
            &self.0
        }
        fn add_layer(&self) -> String {
            let d = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
            self.0.add_layer(d);
            d.into()
        }
    }

    #[test]
    fn the_fake_passes_the_conformance_suite() {
        run(&Fake(FakeHost::new()), "t-");
    }
}
