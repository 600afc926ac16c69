//! How many layers convert at once: `ConvertOptions::slots` bounds the running `tar2sqfs`
//! processes whether the conversion follows the download or runs after it, and every layer
//! still installs. The converter here is the real tar2sqfs behind a script that logs when it
//! starts and ends (and lingers a little, so that conversions that may overlap do).
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use aos_image::convert::ConvertOptions;
use aos_image::download::RetryPolicy;
use aos_image::layerstore::LayerStore;
use aos_image::pipeline::{install_service_layer, resolve};
use aos_image::source::{self, SourceConfig, SourceSpec};
use aos_testkit::image::file;
use aos_testkit::ImageBuilder;

/// A tar2sqfs that appends `+` to `log` when it starts and `-` when it ends.
fn logging_converter(dir: &Path, log: &Path) -> std::path::PathBuf {
    let script = dir.join("tar2sqfs-logged");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho + >> {log}\nsleep 0.3\ntar2sqfs \"$@\"\nrc=$?\necho - >> {log}\nexit $rc\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The most converters the log shows running together.
fn most_at_once(log: &Path) -> usize {
    let (mut now, mut most) = (0i32, 0i32);
    for line in std::fs::read_to_string(log).unwrap().lines() {
        now += if line == "+" { 1 } else { -1 };
        most = most.max(now);
    }
    assert_eq!(now, 0, "every converter that started ended");
    most as usize
}

/// Installs the four layers of an archive image all at once; the most converters seen at once.
async fn install_together(slots: usize, follow: bool) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let mut image = ImageBuilder::new();
    for n in 0..4 {
        let path = format!("layer{n}/data");
        image = image.layer(&[file(&path, format!("layer {n}").as_bytes())]);
    }
    let built = image.write_layout(&dir.path().join("layout"), "v1");
    let tar = dir.path().join("image.tar");
    aos_testkit::image::archive(&built.layout, &tar);
    let src = source::open(&SourceSpec::Archive(tar), &SourceConfig::default())
        .await
        .unwrap();
    let r = resolve(&*src, "linux", "x86_64", None).await.unwrap();
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    let log = dir.path().join("converters.log");
    let opts = ConvertOptions {
        tar2sqfs: logging_converter(dir.path(), &log),
        follow,
        slots: Arc::new(tokio::sync::Semaphore::new(slots)),
        ..ConvertOptions::default()
    };
    let retry = RetryPolicy::default();
    let installs = r.layers_wanted().into_iter().map(|l| {
        let (store, src, opts, retry) = (&store, &src, &opts, &retry);
        async move {
            install_service_layer(store, &**src, &l, retry, opts, &|_| {})
                .await
                .unwrap()
        }
    });
    let installed = futures::future::join_all(installs).await;
    assert_eq!(installed.len(), 4);
    for (rec, _) in &installed {
        assert!(
            store.record(&rec.diff_id).is_some(),
            "every layer installed"
        );
    }
    most_at_once(&log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_layers_convert_at_once_than_the_slots_allow_while_following() {
    assert_eq!(install_together(1, true).await, 1);
    assert_eq!(install_together(2, true).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_layers_convert_at_once_than_the_slots_allow_after_the_download() {
    assert_eq!(install_together(1, false).await, 1);
    // The check sees overlap where it is allowed.
    assert!(install_together(4, false).await > 1);
}
