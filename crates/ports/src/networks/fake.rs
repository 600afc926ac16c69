//! A `Networks` in memory, for tests of the Instance controller: networks are made ready (or
//! failing, with a reason) by the test, addresses are handed out per network and kept, and
//! every call is recorded. It passes the same [`super::conformance`] suite as the real
//! attacher.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{Attachment, NetworkError, Networks, Shaping};

#[derive(Default)]
struct State {
    /// Network id → its number (addresses are 10.<n>.0.<host>), or why it cannot take anyone.
    networks: BTreeMap<String, Result<u8, (&'static str, String)>>,
    /// Instance → (network, host part, shaping).
    attached: BTreeMap<String, (String, u8, Shaping)>,
    calls: Vec<String>,
}

/// See the module documentation.
#[derive(Default)]
pub struct FakeNetworks {
    state: Mutex<State>,
}

impl FakeNetworks {
    /// A fake without networks.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A network instances may join.
    pub fn add(&self, id: &str) {
        let mut s = self.lock();
        let n = s.networks.len() as u8 + 1;
        s.networks.insert(id.into(), Ok(n));
    }

    /// A network that refuses attachments with this reason.
    pub fn fail(&self, id: &str, reason: &'static str, message: &str) {
        self.lock()
            .networks
            .insert(id.into(), Err((reason, message.into())));
    }

    /// The calls made so far, as `op instance` lines.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The network and shaping an instance is attached with.
    pub fn attachment(&self, instance: &str) -> Option<(String, Shaping)> {
        self.lock()
            .attached
            .get(instance)
            .map(|(n, _, sh)| (n.clone(), *sh))
    }
}

#[async_trait::async_trait]
impl Networks for FakeNetworks {
    fn netns_path(&self, instance: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/fake-{instance}"))
    }

    async fn attach(
        &self,
        instance: &str,
        network_id: &str,
        shaping: Shaping,
    ) -> Result<Attachment, NetworkError> {
        let mut s = self.lock();
        s.calls.push(format!("attach {instance}"));
        let n = match s.networks.get(network_id) {
            Some(Ok(n)) => *n,
            Some(Err((reason, message))) => {
                return Err(NetworkError {
                    reason,
                    message: message.clone(),
                })
            }
            None => {
                return Err(NetworkError {
                    reason: aos_api::condition::reason::NETWORK_NOT_READY,
                    message: format!("network {network_id} is not ready"),
                })
            }
        };
        let host = match s.attached.get(instance) {
            Some((net, host, _)) if net == network_id => *host,
            _ => {
                let taken = s
                    .attached
                    .values()
                    .filter(|(net, _, _)| net == network_id)
                    .map(|(_, h, _)| *h)
                    .max()
                    .unwrap_or(1);
                taken + 1
            }
        };
        s.attached
            .insert(instance.into(), (network_id.into(), host, shaping));
        Ok(Attachment {
            ip: format!("10.{n}.0.{host}"),
            gateway: format!("10.{n}.0.1"),
            dns: vec![],
        })
    }

    fn counters(&self, instance: &str) -> Option<(u64, u64)> {
        self.lock().attached.get(instance).map(|_| (0, 0))
    }

    async fn detach(&self, instance: &str, _network_id: &str) -> Result<(), NetworkError> {
        let mut s = self.lock();
        s.calls.push(format!("detach {instance}"));
        s.attached.remove(instance);
        Ok(())
    }
}
