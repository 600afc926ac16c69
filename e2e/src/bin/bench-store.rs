//! The store benchmark of `hack/bench/store.sh`: durable applies per second with 1 and 8
//! clients over 10,000 resources, apply latency percentiles, watch delivery latency, idle RSS and
//! start-to-ready time of a real aosd, printed beside the targets and beside the raw durable
//! commit rate of redb on the same disk (the floor any store on this disk stands on).
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aos_api::{DynObject, ObjectMeta, API_VERSION};
use aos_e2e::{rss_bytes, Aosd, AosdOptions};
use aosctl::client::Client;
use futures::StreamExt;

const RESOURCES: usize = 10_000;

fn network(name: &str, i: usize) -> DynObject {
    DynObject {
        api_version: API_VERSION.into(),
        kind: "Network".into(),
        metadata: ObjectMeta {
            name: name.into(),
            labels: [("bench".to_string(), (i % 10).to_string())].into(),
            ..Default::default()
        },
        spec: serde_json::json!({"dnsServers": ["10.0.0.1"], "allowOutside": i % 2 == 0}),
        status: serde_json::Value::Null,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Applies `RESOURCES` new objects from `clients` concurrent connections; returns per-apply
/// latencies, the wall time, and when each apply started (by name).
async fn applies(
    socket: &std::path::Path,
    prefix: &str,
    clients: usize,
    starts: Arc<Mutex<HashMap<String, Instant>>>,
) -> (Vec<Duration>, Duration) {
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(Client::connect(socket).await.expect("connect"));
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in conns.into_iter().enumerate() {
        let prefix = prefix.to_string();
        let starts = starts.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (c..RESOURCES).step_by(clients) {
                let name = format!("{prefix}-{i}");
                let obj = network(&name, i);
                let t = Instant::now();
                starts.lock().unwrap().insert(name, t);
                client.apply(&obj, false).await.expect("apply");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let wall = t0.elapsed();
    lat.sort();
    (lat, wall)
}

/// Durable single-object commits straight into redb on the same filesystem.
fn raw_redb_commits(dir: &std::path::Path, n: usize) -> f64 {
    let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("t");
    let db = redb::Database::create(dir.join("raw.redb")).unwrap();
    let body = serde_json::to_vec(&network("x", 1)).unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            t.insert(format!("k{i}").as_str(), body.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// What one backend measured.
struct Run {
    one: (Vec<Duration>, Duration),
    eight: (Vec<Duration>, Duration),
    watch: Vec<Duration>,
    busy_rss: u64,
}

/// Applies from 1 then 8 clients, with a watcher of the kind timing each event against the
/// start of its apply.
fn measure(rt: &tokio::runtime::Runtime, aosd: &Aosd) -> Run {
    let socket = aosd.socket.clone();
    let (one, eight, watch) = rt.block_on(async {
        let starts = Arc::new(Mutex::new(HashMap::new()));
        let client = Client::connect(&socket).await.unwrap();
        let mut events = client.watch("Network", "", "", 0).await.unwrap();
        let starts_w = starts.clone();
        let watcher = tokio::spawn(async move {
            let mut lat = Vec::new();
            while let Some(Ok(ev)) = events.next().await {
                let now = Instant::now();
                if let Some(t) = starts_w.lock().unwrap().get(ev.object.name()) {
                    lat.push(now - *t);
                }
                if lat.len() == 2 * RESOURCES {
                    break;
                }
            }
            lat
        });
        let one = applies(&socket, "one", 1, starts.clone()).await;
        let eight = applies(&socket, "eight", 8, starts.clone()).await;
        let mut watch = tokio::time::timeout(Duration::from_secs(120), watcher)
            .await
            .unwrap()
            .unwrap();
        watch.sort();
        (one, eight, watch)
    });
    Run {
        one,
        eight,
        watch,
        busy_rss: rss_bytes(aosd.pid()).unwrap_or(0),
    }
}

/// Puts of new keys straight into etcd from `clients` connections, one key per put: the floor
/// of the etcd backend, whose apply is a read and a compare-and-swap transaction.
fn raw_etcd_puts(rt: &tokio::runtime::Runtime, endpoints: &[String], clients: usize) -> f64 {
    const N: usize = 2000;
    rt.block_on(async {
        let body = serde_json::to_vec(&network("x", 1)).unwrap();
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                for i in (c..N).step_by(clients) {
                    client
                        .put(format!("/raw/{i}"), body.clone(), None)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        N as f64 / t0.elapsed().as_secs_f64()
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Start to ready, on fresh data dirs.
    let mut ready: Vec<Duration> = (0..5).map(|_| Aosd::start().ready_after).collect();
    ready.sort();
    let ready_median = ready[ready.len() / 2];

    // Idle RSS after the node has reported itself.
    let aosd = Aosd::start_with(AosdOptions {
        config: Some("[api]\ngroup = \"\"\n".into()),
        ..Default::default()
    });
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_bytes(aosd.pid()).unwrap_or(0);
    let embedded = measure(&rt, &aosd);
    let raw = raw_redb_commits(aosd.path(), 2000);
    drop(aosd);

    // The same on a 3-member etcd cluster on loopback (its members on this same disk).
    let etcd = (std::env::var("BENCH_ETCD").as_deref() != Ok("0")).then(|| {
        let cluster = aos_testkit::EtcdCluster::start(3);
        let aosd = Aosd::start_with(AosdOptions {
            config: Some(format!(
                "[api]\ngroup = \"\"\n[store]\nbackend = \"etcd\"\n[store.etcd]\nendpoints = {:?}\n",
                cluster.endpoints()
            )),
            ..Default::default()
        });
        let run = measure(&rt, &aosd);
        let raw = [1, 8].map(|c| raw_etcd_puts(&rt, &cluster.endpoints(), c));
        (run, raw)
    });
    let (etcd, raw_etcd) = match etcd {
        Some((run, raw)) => (Some(run), Some(raw)),
        None => (None, None),
    };
    let raw_etcd =
        |i: usize| raw_etcd.map_or_else(String::new, |r| format!("; raw etcd puts: {:.0}/s", r[i]));

    let rate = |(lat, wall): &(Vec<Duration>, Duration)| lat.len() as f64 / wall.as_secs_f64();
    println!("aosd store benchmark: {RESOURCES} new resources per run, every apply acknowledged only after a durable commit");
    println!(
        "etcd: 3 members on loopback, on this machine's disk (each commit fsynced by a quorum)"
    );
    println!();
    println!(
        "{:<44} {:>18} {:>18}   beside",
        "metric", "embedded", "etcd"
    );
    let line = |m: &str, f: &dyn Fn(&Run) -> String, b: &str| {
        let e = etcd.as_ref().map_or_else(|| "-".to_string(), f);
        println!("{m:<44} {:>18} {e:>18}   {b}", f(&embedded));
    };
    line(
        "durable applies/s, 1 client",
        &|r| format!("{:.0}/s", rate(&r.one)),
        &format!(
            "raw redb, 1 object per durable commit: {raw:.0}/s{}",
            raw_etcd(0)
        ),
    );
    line(
        "durable applies/s, 8 clients",
        &|r| format!("{:.0}/s", rate(&r.eight)),
        &format!("target >= 2000/s{}", raw_etcd(1)),
    );
    line(
        "apply latency p50 / p99, 1 client",
        &|r| format!("{} / {}", ms(pct(&r.one.0, 0.5)), ms(pct(&r.one.0, 0.99))),
        "",
    );
    line(
        "apply latency p50 / p99, 8 clients",
        &|r| {
            format!(
                "{} / {}",
                ms(pct(&r.eight.0, 0.5)),
                ms(pct(&r.eight.0, 0.99))
            )
        },
        "",
    );
    line(
        "watch delivery p99 (apply start -> event)",
        &|r| ms(pct(&r.watch, 0.99)),
        &format!(
            "target < 10 ms ({} events, embedded p50 {})",
            embedded.watch.len(),
            ms(pct(&embedded.watch, 0.5))
        ),
    );
    line(
        "aosd RSS after the runs (20k objects)",
        &|r| format!("{:.1} MB", r.busy_rss as f64 / 1e6),
        "",
    );
    println!(
        "{:<44} {:>18}   target < 15 MB",
        "aosd idle RSS",
        format!("{:.1} MB", idle_rss as f64 / 1e6)
    );
    println!(
        "{:<44} {:>18}   target < 100 ms (min {}, max {})",
        "start to API ready (median of 5)",
        ms(ready_median),
        ms(ready[0]),
        ms(ready[ready.len() - 1])
    );
}
