//! Objects a node does not own (in a unit, another node's share of a kind): the runtime gives
//! them no finalizer, no status and no apply or cleanup, only `disowned`, which also runs when
//! an object this node had moves to another.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_api::{ItemSource, ItemSpec, Object};
use aos_reconcile::{Action, Context, Controller, ControllerConfig, Reason, Reconciler};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Reason for Never {
    fn reason(&self) -> &'static str {
        "Never"
    }
}

/// Owns the objects labelled `node=me`; records what it was asked to do.
#[derive(Clone, Default)]
struct Node {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Reconciler for Node {
    type Kind = ItemSpec;
    type Error = Never;

    fn finalizer(&self) -> Option<&'static str> {
        Some("aos.edge/test")
    }

    fn owns(&self, obj: &Object<ItemSpec>) -> bool {
        obj.metadata.labels.get("node").map(String::as_str) == Some("me")
    }

    async fn disowned(
        &self,
        obj: Arc<Object<ItemSpec>>,
        _: &Context<ItemSpec>,
    ) -> Result<Action, Never> {
        let call = format!("disowned {}", obj.metadata.name);
        self.calls.lock().unwrap().push(call);
        Ok(Action::AwaitChange)
    }

    async fn apply(
        &self,
        obj: Arc<Object<ItemSpec>>,
        _: &Context<ItemSpec>,
    ) -> Result<Action, Never> {
        let call = format!("apply {}", obj.metadata.name);
        self.calls.lock().unwrap().push(call);
        Ok(Action::AwaitChange)
    }

    async fn cleanup(
        &self,
        obj: Arc<Object<ItemSpec>>,
        _: &Context<ItemSpec>,
    ) -> Result<Action, Never> {
        let call = format!("cleanup {}", obj.metadata.name);
        self.calls.lock().unwrap().push(call);
        Ok(Action::AwaitChange)
    }
}

fn item(name: &str, node: &str) -> Object<ItemSpec> {
    let mut o = Object::new(
        name,
        ItemSpec {
            item_id: "hello".into(),
            version: "1".into(),
            source: ItemSource {
                registry: Some("127.0.0.1:5000/hello:1".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    o.metadata.labels.insert("node".into(), node.into());
    o
}

async fn settle() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn another_nodes_objects_get_no_finalizer_status_or_apply_and_a_moved_one_is_let_go() {
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
    let api = Api::<ItemSpec>::new(backend.clone());
    api.apply(&item("mine", "me")).await.unwrap();
    api.apply(&item("theirs", "other")).await.unwrap();
    let node = Node::default();
    let stop = CancellationToken::new();
    let config = ControllerConfig {
        resync: Duration::from_secs(86400),
        ..ControllerConfig::default()
    };
    let task =
        tokio::spawn(Controller::new(node.clone(), backend.clone(), config).run(stop.clone()));
    settle().await;
    let mut calls = node.calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(calls, ["apply mine", "disowned theirs"]);
    let theirs = api.get("theirs").await.unwrap();
    assert!(
        theirs.metadata.finalizers.is_empty(),
        "no finalizer on theirs"
    );
    assert_eq!(
        theirs.status.common.observed_generation, 0,
        "no status on theirs"
    );
    let mine = api.get("mine").await.unwrap();
    assert_eq!(mine.metadata.finalizers, ["aos.edge/test"]);
    assert_eq!(mine.status.common.observed_generation, 1);

    // "mine" moves to another node: this node lets go of it, and its finalizer is not its to
    // remove (the new owner's cleanup does, on deletion).
    node.calls.lock().unwrap().clear();
    api.apply(&item("mine", "other")).await.unwrap();
    settle().await;
    assert_eq!(*node.calls.lock().unwrap(), ["disowned mine"]);
    // Deleting another node's object runs no cleanup here.
    node.calls.lock().unwrap().clear();
    api.delete("theirs").await.unwrap();
    settle().await;
    assert!(api.get_opt("theirs").await.unwrap().is_none());
    assert!(
        node.calls.lock().unwrap().is_empty(),
        "{:?}",
        node.calls.lock().unwrap()
    );
    stop.cancel();
    task.await.unwrap();
}
