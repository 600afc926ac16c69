//! A typed client of aosd's gRPC API over its Unix socket, with errors a user can act on.

use std::path::{Path, PathBuf};

use aos_api::DynObject;
use aos_rpc::v1;
use futures::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::Code;

/// What can go wrong talking to aosd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to aosd at {path}: {source} (is aosd running? set --socket or AOSD_SOCKET)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{}", describe(.0))]
    Api(tonic::Status),
    #[error("aosd sent an object that does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

fn describe(s: &tonic::Status) -> String {
    let what = match s.code() {
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::Aborted => "conflict",
        Code::InvalidArgument => "invalid",
        Code::PermissionDenied => "permission denied",
        Code::OutOfRange => "too old",
        Code::FailedPrecondition => "not now",
        Code::Unavailable => "unavailable",
        _ => "error",
    };
    if s.code() == Code::Unavailable && s.message().contains("transport") {
        return format!("aosd is unavailable: {}", s.message());
    }
    format!("{what}: {}", s.message())
}

impl ClientError {
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Api(s) => Some(s.code()),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Api(s)
    }
}

/// An event of a watch.
#[derive(Clone, Debug)]
pub struct Event {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub type_: String,
    pub object: DynObject,
    pub revision: u64,
}

#[derive(Clone)]
pub struct Client {
    inner: aos_rpc::AosdClient<Channel>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
        let inner = aos_rpc::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.to_path_buf(),
                source,
            })?;
        Ok(Client { inner })
    }

    /// Creates or updates; returns the stored object and "created", "configured" or "unchanged".
    pub async fn apply(
        &self,
        obj: &DynObject,
        dry_run: bool,
    ) -> Result<(DynObject, String), ClientError> {
        let r = self
            .inner
            .clone()
            .apply(v1::ApplyRequest {
                json: serde_json::to_string(obj)?,
                dry_run,
            })
            .await?
            .into_inner();
        Ok((serde_json::from_str(&r.json)?, r.outcome))
    }

    pub async fn get(&self, kind: &str, name: &str) -> Result<DynObject, ClientError> {
        let r = self
            .inner
            .clone()
            .get(v1::GetRequest {
                kind: kind.into(),
                name: name.into(),
            })
            .await?
            .into_inner();
        Ok(serde_json::from_str(&r.json)?)
    }

    /// The object, or `None` if there is none.
    pub async fn get_opt(&self, kind: &str, name: &str) -> Result<Option<DynObject>, ClientError> {
        match self.get(kind, name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Objects of a kind and the revision they were read at.
    pub async fn list(
        &self,
        kind: &str,
        selector: &str,
    ) -> Result<(Vec<DynObject>, u64), ClientError> {
        let r = self
            .inner
            .clone()
            .list(v1::ListRequest {
                kind: kind.into(),
                label_selector: selector.into(),
            })
            .await?
            .into_inner();
        let items = r
            .items
            .iter()
            .map(|j| serde_json::from_str(j))
            .collect::<Result<_, _>>()?;
        Ok((items, r.resource_version))
    }

    /// Deletes; returns the object if finalizers keep it for now.
    pub async fn delete(
        &self,
        kind: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Option<DynObject>, ClientError> {
        let r = self
            .inner
            .clone()
            .delete(v1::DeleteRequest {
                kind: kind.into(),
                name: name.into(),
                dry_run,
                resource_version: 0,
            })
            .await?
            .into_inner();
        Ok(r.json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    /// Deletes (or marks) each `(kind, name)` in the order given, in one request; one result
    /// per target, in that order.
    pub async fn delete_many(
        &self,
        targets: &[(String, String)],
        dry_run: bool,
    ) -> Result<Vec<Result<Option<DynObject>, ClientError>>, ClientError> {
        let r = self
            .inner
            .clone()
            .delete_many(v1::DeleteManyRequest {
                targets: targets
                    .iter()
                    .map(|(kind, name)| v1::DeleteTarget {
                        kind: kind.clone(),
                        name: name.clone(),
                    })
                    .collect(),
                dry_run,
            })
            .await?
            .into_inner();
        Ok(r.results
            .into_iter()
            .map(|d| match Code::from_i32(d.code) {
                Code::Ok => Ok(d.json.map(|j| serde_json::from_str(&j)).transpose()?),
                code => Err(tonic::Status::new(code, d.message).into()),
            })
            .collect())
    }

    /// Events after `since` (0: from now on) of a kind (empty: all), optionally one name.
    pub async fn watch(
        &self,
        kind: &str,
        name: &str,
        selector: &str,
        since: u64,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + use<>, ClientError> {
        let stream = self
            .inner
            .clone()
            .watch(v1::WatchRequest {
                kind: kind.into(),
                resource_version: since,
                label_selector: selector.into(),
                name: name.into(),
            })
            .await?
            .into_inner();
        Ok(stream.map(|r| {
            let e = r?;
            Ok(Event {
                type_: e.r#type,
                object: serde_json::from_str(&e.json)?,
                revision: e.revision,
            })
        }))
    }

    /// An instance's log records: the last `tail` (all when `None`) since `since`, then new
    /// ones with `follow`.
    pub async fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<usize>,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<impl Stream<Item = Result<v1::LogEntry, ClientError>> + use<>, ClientError> {
        let stream = self
            .inner
            .clone()
            .logs(v1::LogsRequest {
                name: name.into(),
                follow,
                tail: tail.map_or(-1, |t| t as i64),
                since: since.map(|t| t.to_rfc3339()).unwrap_or_default(),
            })
            .await?
            .into_inner();
        Ok(stream.map(|r| Ok(r?)))
    }

    /// Fresh usage of the running instances, by name (`None`: the node does not serve it).
    pub async fn top(
        &self,
    ) -> Result<Option<std::collections::HashMap<String, serde_json::Value>>, ClientError> {
        let r = match self.inner.clone().top(v1::TopRequest {}).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(s) => return Err(s.into()),
        };
        let mut out = std::collections::HashMap::new();
        for (name, json) in r.usage {
            out.insert(name, serde_json::from_str(&json)?);
        }
        Ok(Some(out))
    }

    pub async fn health(&self) -> Result<v1::HealthResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .health(v1::HealthRequest {})
            .await?
            .into_inner())
    }
}
