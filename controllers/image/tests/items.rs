//! The Item controller on a fake source (the `Sources` port) and the in-memory store: an Item
//! resolves into its Layers and the config its instances run with, turns Ready with its
//! layers, fails with the reason of a source that drops the connection (and resolves on the
//! retry), and fails by field on an item config that does not validate. No registry, no
//! network, no root.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aos_api::{ItemPhase, ItemSpec, LayerPhase, LayerSpec};
use aos_image::source::fake::{FakeSource, FakeSources};
use aos_image::source::SourceSpec;
use aos_image_controllers::ItemReconciler;
use aos_reconcile::{Action, Reconciler};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use aos_testkit::image::{file, ImageBuilder};

mod common;

use common::REF;

struct Rig {
    _dir: tempfile::TempDir,
    backend: Arc<dyn Backend>,
    api: Api<ItemSpec>,
    reconciler: ItemReconciler,
    source: Arc<FakeSource>,
}

impl Rig {
    fn new(item_config: serde_json::Value) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let built = ImageBuilder::new()
            .layer(&[file("usr/bin/svc", b"#!/bin/sh\n")])
            .layer(&[file("etc/svc.conf", b"on\n")])
            .item_config(item_config)
            .write_layout(&dir.path().join("layout"), "v1");
        let source = Arc::new(FakeSource::from_layout("fake registry", &built.layout).unwrap());
        let sources = FakeSources::new();
        sources.add(&SourceSpec::Registry(REF.into()), source.clone());
        let env = common::env(&dir.path().join("images"), Arc::new(sources), None);
        let backend: Arc<dyn Backend> =
            Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
        Rig {
            _dir: dir,
            api: Api::new(backend.clone()),
            backend,
            reconciler: ItemReconciler::new(env),
            source,
        }
    }

    async fn item(&self) {
        common::apply_item(&self.backend).await;
    }

    async fn pass(&self) -> Result<Action, aos_image_controllers::PipelineError> {
        let obj = Arc::new(self.api.get("svc").await.unwrap());
        self.reconciler
            .apply(obj, &common::ctx(&self.backend))
            .await
    }

    async fn status(&self) -> aos_api::ItemStatus {
        self.api.get("svc").await.unwrap().status
    }

    fn reason(s: &aos_api::ItemStatus) -> String {
        s.common.condition("Ready").unwrap().reason.clone()
    }
}

#[tokio::test]
async fn an_item_resolves_into_its_layers_and_turns_ready_with_them() {
    let rig = Rig::new(serde_json::json!({"cmd": "/usr/bin/svc", "hostname": "svc"}));
    rig.item().await;
    rig.pass().await.unwrap();
    let s = rig.status().await;
    assert_eq!(s.phase, ItemPhase::Downloading);
    assert_eq!(s.layers.len(), 2);
    let config = s.config.clone().unwrap();
    assert_eq!(config.item().hostname.as_deref(), Some("svc"));
    let layers = Api::<LayerSpec>::new(rig.backend.clone());
    for name in &s.layers {
        let l = layers.get(name).await.unwrap();
        assert_eq!(l.spec.sources, ["registry:registry.test/svc"]);
        assert!(l.spec.diff_id.is_some());
        layers
            .update_status(name, |st| st.phase = LayerPhase::Ready)
            .await
            .unwrap();
    }
    rig.pass().await.unwrap();
    let s = rig.status().await;
    assert_eq!(
        (s.phase, Rig::reason(&s).as_str()),
        (ItemPhase::Ready, "LayersReady")
    );
    assert!(rig.source.calls().iter().any(|c| c == "root"));
}

#[tokio::test]
async fn a_dropped_connection_fails_the_item_with_its_reason_and_the_retry_resolves_it() {
    let rig = Rig::new(serde_json::json!({}));
    rig.item().await;
    rig.source.fail_next(1);
    let e = rig.pass().await.unwrap_err();
    assert!(e.to_string().contains("connection reset"), "{e}");
    let s = rig.status().await;
    assert_eq!(s.phase, ItemPhase::Failed);
    rig.pass().await.unwrap();
    assert_eq!(rig.status().await.phase, ItemPhase::Downloading);
}

#[tokio::test]
async fn an_item_config_that_does_not_validate_fails_the_item_by_field() {
    let rig = Rig::new(serde_json::json!({"quotas": {"pidsLimit": 0}}));
    rig.item().await;
    let e = rig.pass().await.unwrap_err();
    assert!(e.to_string().contains("pidsLimit"), "{e}");
    let s = rig.status().await;
    assert_eq!(
        (s.phase, Rig::reason(&s).as_str()),
        (ItemPhase::Failed, "InvalidConfig")
    );
    assert!(
        s.layers.is_empty(),
        "nothing is fetched for an invalid item"
    );
}
