//! The conformance cases of deletion: finalizers, objects being deleted, batch deletes.

use std::sync::Arc;

use aos_api::{DynObject, Selector};
use serde_json::json;

use super::{next, obj};
use crate::{Backend, EventType};

pub(super) async fn finalizers(b: Arc<dyn Backend>) {
    let mut f = obj("Item", "a", json!({}));
    f.metadata.finalizers = vec!["aos.edge/test".into()];
    b.apply(f, false).await.unwrap();
    let marked = b
        .delete("Item", "a", None, false)
        .await
        .unwrap()
        .expect("still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let again = b
        .delete("Item", "a", None, false)
        .await
        .unwrap()
        .expect("still there");
    assert_eq!(
        again.metadata.deletion_timestamp,
        marked.metadata.deletion_timestamp
    );
    // Apply of the same object keeps the finalizer it did not name.
    b.apply(obj("Item", "a", json!({})), false).await.unwrap();
    assert_eq!(
        b.get("Item", "a").await.unwrap().metadata.finalizers,
        ["aos.edge/test"]
    );
    let gone = b.set_finalizers("Item", "a", vec![], None).await.unwrap();
    assert!(
        gone.is_none(),
        "removing the last finalizer removes the object"
    );
    assert!(b.get("Item", "a").await.unwrap_err().is_not_found());
    b.apply(obj("Item", "plain", json!({})), false)
        .await
        .unwrap();
    assert!(b
        .delete("Item", "plain", None, false)
        .await
        .unwrap()
        .is_none());
    assert!(b
        .delete("Item", "plain", None, false)
        .await
        .unwrap_err()
        .is_not_found());
    // Finalizers on an object that is not being deleted just change.
    b.apply(obj("Item", "b", json!({})), false).await.unwrap();
    let kept = b
        .set_finalizers("Item", "b", vec!["x".into()], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.metadata.finalizers, ["x"]);
}

fn ready_of(o: &DynObject) -> (String, String) {
    let c = o.status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or("").to_string(),
        c["reason"].as_str().unwrap_or("").to_string(),
    )
}

pub(super) async fn terminating(b: Arc<dyn Backend>) {
    let mut f = obj("Item", "a", json!({}));
    f.metadata.finalizers = vec!["aos.edge/test".into()];
    b.apply(f, false).await.unwrap();
    let ready = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Done",
        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}], "phase": "Ready"});
    b.update_status("Item", "a", ready.clone(), None)
        .await
        .unwrap();
    let marked = b.delete("Item", "a", None, false).await.unwrap().unwrap();
    assert_eq!(ready_of(&marked), ("False".into(), "Terminating".into()));
    assert_eq!(
        marked.status["phase"], "Ready",
        "the rest of the status stays"
    );
    // A controller that still writes Ready=True does not make it Ready again.
    let after = b.update_status("Item", "a", ready, None).await.unwrap();
    assert_eq!(ready_of(&after), ("False".into(), "Terminating".into()));
    assert_eq!(b.get("Item", "a").await.unwrap().status, after.status);
    // An object without any status gets the condition too.
    let mut g = obj("Item", "b", json!({}));
    g.metadata.finalizers = vec!["aos.edge/test".into()];
    b.apply(g, false).await.unwrap();
    let marked = b.delete("Item", "b", None, false).await.unwrap().unwrap();
    assert_eq!(ready_of(&marked), ("False".into(), "Terminating".into()));
}

pub(super) async fn delete_many(b: Arc<dyn Backend>) {
    for name in ["a", "c", "d"] {
        b.apply(obj("Item", name, json!({})), false).await.unwrap();
    }
    let mut f = obj("Layer", "b", json!({}));
    f.metadata.finalizers = vec!["aos.edge/test".into()];
    b.apply(f, false).await.unwrap();
    let t = |kind: &str, name: &str| (kind.to_string(), name.to_string());
    let targets = [
        t("Item", "d"),
        t("Item", "missing"),
        t("Layer", "b"),
        t("Item", "a"),
    ];

    let dry = b.delete_many(&targets, true).await;
    assert_eq!(dry.len(), 4);
    assert!(dry[1].as_ref().unwrap_err().is_not_found());
    assert_eq!(
        b.list("Item", &Selector::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );

    let start = b.revision().await.unwrap();
    let done = b.delete_many(&targets, false).await;
    assert!(done[0].as_ref().unwrap().is_none(), "d deleted");
    assert!(
        done[1].as_ref().unwrap_err().is_not_found(),
        "{:?}",
        done[1]
    );
    let marked = done[2].as_ref().unwrap().as_ref().expect("b kept, marked");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(done[3].as_ref().unwrap().is_none(), "a deleted");
    assert_eq!(b.get("Item", "c").await.unwrap().metadata.name, "c");

    let mut w = b.watch(None, Some(start));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next(&mut w).await;
        seen.push((e.type_, e.object.metadata.name, e.revision));
    }
    let order: Vec<_> = seen.iter().map(|(t, n, _)| (*t, n.as_str())).collect();
    assert_eq!(
        order,
        [
            (EventType::Deleted, "d"),
            (EventType::Modified, "b"),
            (EventType::Deleted, "a")
        ],
        "the order given"
    );
    assert!(seen[0].2 < seen[1].2 && seen[1].2 < seen[2].2, "{seen:?}");
}
