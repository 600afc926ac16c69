//! The etcd backend over TLS: with the cluster's CA and a client certificate it works; without
//! a client certificate, or with one of another CA, it is refused with a clear error.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aos_store::Backend;
use aos_store_etcd::{Etcd, EtcdOptions, EtcdTls};
use aos_testkit::certs::Pki;
use aos_testkit::etcd::{EtcdCluster, EtcdTlsFiles};

fn options(cluster: &EtcdCluster, tls: EtcdTls) -> EtcdOptions {
    EtcdOptions {
        endpoints: cluster.endpoints(),
        prefix: "/tls/".into(),
        tls: Some(tls),
        retry_for: Duration::from_secs(1),
        ..EtcdOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_works_over_tls_with_a_client_certificate_and_is_refused_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path()).unwrap();
    let server = pki.server("etcd").unwrap();
    let cluster = EtcdCluster::start_tls(
        3,
        EtcdTlsFiles {
            ca: pki.ca_file.clone(),
            cert: server.cert.clone(),
            key: server.key.clone(),
        },
    );
    assert!(cluster.endpoints()[0].starts_with("https://"));
    let client = pki.client("node1").unwrap();
    let etcd = Etcd::connect(options(
        &cluster,
        EtcdTls {
            ca: pki.ca_file.clone(),
            cert: Some(client.cert.clone()),
            key: Some(client.key.clone()),
        },
    ))
    .await
    .unwrap();
    let o: aos_api::DynObject = serde_json::from_value(serde_json::json!({
        "apiVersion": aos_api::API_VERSION, "kind": "Item", "metadata": {"name": "a"}, "spec": {}
    }))
    .unwrap();
    etcd.apply(o, false).await.unwrap();
    assert_eq!(etcd.get("Item", "a").await.unwrap().metadata.name, "a");

    // No client certificate: the members refuse the handshake.
    let err = Etcd::connect(options(
        &cluster,
        EtcdTls {
            ca: pki.ca_file.clone(),
            cert: None,
            key: None,
        },
    ))
    .await
    .err()
    .expect("refused without a client certificate");
    assert!(err.to_string().contains("unavailable"), "{err}");

    // A client certificate of another CA: refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::new(other_dir.path()).unwrap();
    let stranger = other.client("stranger").unwrap();
    let err = Etcd::connect(options(
        &cluster,
        EtcdTls {
            ca: pki.ca_file.clone(),
            cert: Some(stranger.cert),
            key: Some(stranger.key),
        },
    ))
    .await
    .err()
    .expect("refused with a stranger's certificate");
    assert!(err.to_string().contains("unavailable"), "{err}");

    // A certificate without its key is a configuration error, said before connecting.
    let err = Etcd::connect(options(
        &cluster,
        EtcdTls {
            ca: pki.ca_file.clone(),
            cert: Some(client.cert),
            key: None,
        },
    ))
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("needs its key"), "{err}");
}
