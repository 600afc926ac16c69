//! Every source the pipeline reads from passes the `BlobSource` conformance suite that the
//! fake passes: an image layout directory, an archive of it, the layout over HTTP (also from a
//! server that ignores ranges) and a real registry it was pushed to.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use aos_image::source::{self, conformance, fake::FakeSource, SourceConfig, SourceSpec};
use aos_testkit::image::{file, ImageBuilder};
use aos_testkit::{Faults, HttpServer, Registry};

fn image(dir: &std::path::Path) -> aos_testkit::BuiltImage {
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    ImageBuilder::new()
        .layer(&[file("etc/hello", b"hello\n"), file("big", &big)])
        .layer(&[file("etc/second", b"two\n")])
        .write_layout(&dir.join("layout"), "v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_passes_the_blob_source_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let built = image(dir.path());
    let config = SourceConfig::default();

    let layout = source::open(&SourceSpec::Archive(built.layout.clone()), &config)
        .await
        .unwrap();
    conformance::run(&*layout).await;

    let tar = dir.path().join("image.tar");
    aos_testkit::image::archive(&built.layout, &tar);
    let archive = source::open(&SourceSpec::Archive(tar), &config)
        .await
        .unwrap();
    conformance::run(&*archive).await;

    for faults in [
        Faults::default(),
        Faults {
            ignore_range: true,
            ..Default::default()
        },
    ] {
        let server = HttpServer::serve(dir.path(), faults);
        let spec = SourceSpec::Http(format!("{}/layout", server.url()));
        conformance::run(&*source::open(&spec, &config).await.unwrap()).await;
    }

    let registry = Registry::start();
    let reference = registry.push(&built.layout, "v1", "aos/conformance");
    let config = SourceConfig {
        insecure_registries: vec![registry.host()],
        ..Default::default()
    };
    let spec = SourceSpec::Registry(reference);
    conformance::run(&*source::open(&spec, &config).await.unwrap()).await;

    let fake = FakeSource::from_layout("fake", &built.layout).unwrap();
    conformance::run(&fake).await;
}
