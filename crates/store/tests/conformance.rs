//! The embedded backend, in memory and on a file, passes the conformance suite.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aos_store::conformance::{run, SuiteOptions};
use aos_store::{Backend, Embedded, EmbeddedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_store_passes_the_conformance_suite() {
    run(|o: SuiteOptions| {
        let opts = EmbeddedOptions {
            event_log_limit: o.event_log_limit,
            ..EmbeddedOptions::in_memory()
        };
        Arc::new(Embedded::open(opts).unwrap()) as Arc<dyn Backend>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    run(|o: SuiteOptions| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let opts = EmbeddedOptions {
            event_log_limit: o.event_log_limit,
            ..EmbeddedOptions::file(dir.path().join(format!("s{i}.redb")))
        };
        Arc::new(Embedded::open(opts).unwrap()) as Arc<dyn Backend>
    })
    .await;
}
