//! Who may write: the peer credentials of the Unix socket connection decide. Root, a process
//! whose group is the configured one, or one with that group among its supplementary groups may
//! write; anyone else gets PermissionDenied. Reads are open to whoever can connect (the socket's
//! mode and group decide that).

use nix::unistd::{Gid, Group};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

#[derive(Clone, Debug)]
pub struct Auth {
    group: Option<(String, Gid)>,
}

/// The supplementary groups of a process, from `/proc/<pid>/status`.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

impl Auth {
    /// `group`: the writers' group name; empty or unknown means root only.
    pub fn new(group: &str) -> Self {
        let group = if group.is_empty() {
            None
        } else {
            match Group::from_name(group) {
                Ok(Some(g)) => Some((group.to_string(), g.gid)),
                _ => {
                    tracing::warn!(group, "writers' group does not exist; only root may write");
                    None
                }
            }
        };
        Auth { group }
    }

    pub fn group(&self) -> Option<Gid> {
        self.group.as_ref().map(|(_, g)| *g)
    }

    /// Whether a peer with these credentials may write.
    pub fn may_write(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 {
            return true;
        }
        let Some((_, g)) = &self.group else {
            return false;
        };
        gid == g.as_raw() || pid.is_some_and(|p| supplementary_groups(p).contains(&g.as_raw()))
    }

    /// The uid of the caller (the API is served on a Unix socket only).
    pub fn peer_uid<T>(req: &Request<T>) -> u32 {
        req.extensions()
            .get::<UdsConnectInfo>()
            .and_then(|c| c.peer_cred)
            .map_or(u32::MAX, |c| c.uid())
    }

    /// Whether the caller may write (readers without write access see secrets redacted).
    pub fn is_writer<T>(&self, req: &Request<T>) -> bool {
        req.extensions()
            .get::<UdsConnectInfo>()
            .and_then(|c| c.peer_cred)
            .is_some_and(|c| self.may_write(c.uid(), c.gid(), c.pid()))
    }

    /// Refuses a write call from a peer that may not write.
    pub fn check_write<T>(&self, req: &Request<T>, call: &str) -> Result<(), Status> {
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|c| c.peer_cred)
            .ok_or_else(|| Status::permission_denied("peer credentials are unavailable"))?;
        if self.may_write(cred.uid(), cred.gid(), cred.pid()) {
            return Ok(());
        }
        tracing::info!(uid = cred.uid(), gid = cred.gid(), call, "write refused");
        let who = match &self.group {
            Some((name, _)) => format!("root or members of group {name:?}"),
            None => "root".to_string(),
        };
        Err(Status::permission_denied(format!(
            "{call} needs write access: only {who} may write (you are uid {})",
            cred.uid()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_may_write_and_others_need_the_group() {
        let root_only = Auth::new("");
        assert!(root_only.may_write(0, 0, None));
        assert!(!root_only.may_write(1000, 1000, None));
        let with_group = Auth {
            group: Some(("aosd".into(), Gid::from_raw(4242))),
        };
        assert!(with_group.may_write(1000, 4242, None), "primary group");
        assert!(!with_group.may_write(1000, 1000, None));
        assert!(
            !with_group.may_write(1000, 1000, Some(std::process::id() as i32)),
            "this process is not in 4242"
        );
    }

    #[test]
    fn an_unknown_group_means_root_only() {
        let a = Auth::new("no-such-group-aosd-test");
        assert!(a.group().is_none());
    }
}
