//! The resolver of each network, listening on its gateway (UDP port 53): it answers the names
//! of the network's instances (`<index>.<subject>.<item>`, `<subject>.<item>` for index 0, the
//! item's hostname, each also with `.<networkId>`) and forwards every other query to the
//! host's name servers, unless the network may not reach the outside: then it answers its own
//! names only (a resolver that forwards would carry data out by DNS).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};

use crate::NetError;

/// The names an instance answers to on `network`.
pub fn names_for(
    item: &str,
    subject: &str,
    index: u64,
    hostname: Option<&str>,
    network: &str,
) -> Vec<String> {
    let mut base = vec![format!("{index}.{subject}.{item}")];
    if index == 0 {
        base.push(format!("{subject}.{item}"));
    }
    base.extend(hostname.map(str::to_string));
    let mut out = base.clone();
    out.extend(base.iter().map(|n| format!("{n}.{network}")));
    out.into_iter().map(|n| n.to_ascii_lowercase()).collect()
}

type Zone = HashMap<String, Ipv4Addr>;

/// A network's names, and whether other names are forwarded for it.
struct NetZone {
    names: Zone,
    forward: bool,
}

/// The zones of every network and the servers answering them.
pub struct Dns {
    zones: RwLock<HashMap<String, NetZone>>,
    servers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    upstream: Vec<SocketAddr>,
}

impl Dns {
    /// `upstream`: where unknown names are sent (the host's name servers).
    pub fn new(upstream: Vec<SocketAddr>) -> Arc<Dns> {
        Arc::new(Dns {
            zones: RwLock::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
            upstream,
        })
    }

    /// The name servers of a resolv.conf text, port 53.
    pub fn upstream_of(resolv_conf: &str) -> Vec<SocketAddr> {
        resolv_conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }

    /// The names of `network`; `forward`: other names go to the upstream servers (only for a
    /// network that may reach the outside).
    pub fn set_zone(&self, network: &str, zone: Zone, forward: bool) {
        self.zones
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                network.to_string(),
                NetZone {
                    names: zone,
                    forward,
                },
            );
    }

    /// Serves `network` on `addr`:53 unless it is served already.
    pub async fn serve(self: &Arc<Self>, network: &str, addr: Ipv4Addr) -> Result<(), NetError> {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        if servers.get(network).is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        let sock = std::net::UdpSocket::bind((addr, 53)).map_err(|e| NetError::Io {
            what: format!("failed to listen for DNS on {addr}:53"),
            source: e,
        })?;
        sock.set_nonblocking(true).map_err(|e| NetError::Io {
            what: "failed to set up the DNS socket".into(),
            source: e,
        })?;
        let sock = Arc::new(
            tokio::net::UdpSocket::from_std(sock).map_err(|e| NetError::Io {
                what: "failed to set up the DNS socket".into(),
                source: e,
            })?,
        );
        let me = self.clone();
        let net = network.to_string();
        servers.insert(
            network.to_string(),
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        continue;
                    };
                    let query = buf[..n].to_vec();
                    let (me, sock, net) = (me.clone(), sock.clone(), net.clone());
                    tokio::spawn(async move {
                        if let Some(reply) = me.reply(&net, &query).await {
                            let _ = sock.send_to(&reply, from).await;
                        }
                    });
                }
            }),
        );
        Ok(())
    }

    pub fn stop(&self, network: &str) {
        if let Some(h) = self
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(network)
        {
            h.abort();
        }
        self.zones
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(network);
    }

    /// The answer from the zone, or the upstream's (NXDOMAIN where nothing is forwarded).
    pub async fn reply(&self, network: &str, query: &[u8]) -> Option<Vec<u8>> {
        if let Some(local) = self.answer(network, query) {
            return Some(local);
        }
        let forward = self
            .zones
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(network)
            .is_some_and(|z| z.forward);
        if !forward {
            return not_found(query);
        }
        for up in &self.upstream {
            let bind: SocketAddr = if up.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.send_to(query, up).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
            {
                buf.truncate(n);
                return Some(buf);
            }
        }
        None
    }

    /// A reply from the zone of `network`, if the name is one of its instances.
    pub fn answer(&self, network: &str, query: &[u8]) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        let question = q.queries().first()?.clone();
        let name = question
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = {
            let zones = self.zones.read().unwrap_or_else(|e| e.into_inner());
            *zones.get(network)?.names.get(&name)?
        };
        let mut r = Message::new();
        r.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_op_code(q.op_code())
            .set_recursion_desired(q.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true)
            .set_response_code(ResponseCode::NoError)
            .add_query(question.clone());
        if question.query_type() == RecordType::A {
            r.add_answer(Record::from_rdata(
                question.name().clone(),
                5,
                RData::A(A(ip)),
            ));
        }
        r.to_vec().ok()
    }
}

/// NXDOMAIN for a query.
fn not_found(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut r = Message::new();
    r.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_recursion_desired(q.recursion_desired())
        .set_response_code(ResponseCode::NXDomain);
    for question in q.queries() {
        r.add_query(question.clone());
    }
    r.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn instance_names_have_short_forms_and_network_suffixes() {
        let n = names_for("web", "demo", 0, Some("Hello"), "n1");
        for want in [
            "0.demo.web",
            "demo.web",
            "hello",
            "0.demo.web.n1",
            "demo.web.n1",
            "hello.n1",
        ] {
            assert!(n.contains(&want.to_string()), "{want} in {n:?}");
        }
        assert!(!names_for("web", "demo", 1, None, "n1").contains(&"demo.web".to_string()));
    }

    #[test]
    fn the_zone_answers_its_names_and_leaves_others_to_the_upstream() {
        let dns = Dns::new(vec![]);
        let ip = Ipv4Addr::new(172, 20, 0, 2);
        dns.set_zone("n1", [("0.demo.web".to_string(), ip)].into(), true);
        let r = Message::from_vec(
            &dns.answer("n1", &query("0.Demo.web.", RecordType::A))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.id(), 7);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].data(), &RData::A(A(ip)));
        let aaaa = Message::from_vec(
            &dns.answer("n1", &query("0.demo.web.", RecordType::AAAA))
                .unwrap(),
        )
        .unwrap();
        assert!(
            aaaa.answers().is_empty(),
            "a known name without IPv6: no records, no error"
        );
        assert!(dns
            .answer("n1", &query("example.com.", RecordType::A))
            .is_none());
        assert!(
            dns.answer("n2", &query("0.demo.web.", RecordType::A))
                .is_none(),
            "zones are per network"
        );
        assert_eq!(
            Dns::upstream_of("# x\nnameserver 10.0.0.1\nnameserver ::1\nsearch a\n"),
            vec!["10.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn a_network_closed_to_the_outside_gets_its_own_names_and_nothing_forwarded() {
        // An upstream that would answer anything: it must not even be asked.
        let upstream = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns = Dns::new(vec![upstream.local_addr().unwrap()]);
        let ip = Ipv4Addr::new(172, 20, 0, 2);
        dns.set_zone("closed", [("0.demo.web".to_string(), ip)].into(), false);
        let own = dns
            .reply("closed", &query("0.demo.web.", RecordType::A))
            .await;
        assert_eq!(Message::from_vec(&own.unwrap()).unwrap().answers().len(), 1);
        let out = dns
            .reply("closed", &query("secret.exfil.example.", RecordType::A))
            .await
            .unwrap();
        assert_eq!(
            Message::from_vec(&out).unwrap().response_code(),
            ResponseCode::NXDomain
        );
        upstream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        assert!(
            upstream.recv_from(&mut buf).is_err(),
            "nothing reached the upstream"
        );
    }
}
