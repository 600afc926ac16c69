//! The gRPC API over the store: Apply (with server-side dry run), Get, List (label selectors),
//! Delete, Watch (from a resourceVersion) and Health. Every object is validated before it is
//! stored, and store errors map to gRPC codes here and nowhere else.

use std::pin::Pin;
use std::sync::Arc;

use aos_api::{registry, DynObject, Selector};
use aos_rpc::v1;
use aos_store::{Backend, EventType, StoreError};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::auth::Auth;

pub struct ApiServer {
    backend: Arc<dyn Backend>,
    auth: Auth,
    node_id: String,
    /// Where instances keep their files: `<dir>/<name>/logs`.
    instances_dir: std::path::PathBuf,
    /// Where writers other than root may name local archives.
    archive_dirs: Vec<std::path::PathBuf>,
    /// The Instance controller's environment once it runs (for `Top`).
    instances: crate::instances::InstancesHandle,
}

impl ApiServer {
    pub fn new(
        backend: Arc<dyn Backend>,
        auth: Auth,
        node_id: String,
        instances_dir: std::path::PathBuf,
        archive_dirs: Vec<std::path::PathBuf>,
        instances: crate::instances::InstancesHandle,
    ) -> Self {
        ApiServer {
            backend,
            auth,
            node_id,
            instances_dir,
            archive_dirs,
            instances,
        }
    }
}

fn entry(l: aos_logger::LogLine) -> v1::LogEntry {
    v1::LogEntry {
        time: l.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        stream: l.stream.as_str().into(),
        text: l.text,
        partial: l.partial,
    }
}

/// Longest `grpc-message` a client gets: an error quoting a 100 KB name must not overflow the
/// client's metadata limit (it would see RESOURCE_EXHAUSTED instead of the real code).
const MAX_MESSAGE: usize = 2048;

/// Shortens the error message of a gRPC response (the `grpc-message` header, percent-encoded)
/// to [`MAX_MESSAGE`] bytes, cut at a character boundary of the encoding and marked.
pub fn bound_message<B>(mut res: http::Response<B>) -> http::Response<B> {
    let Some(v) = res.headers().get("grpc-message") else {
        return res;
    };
    let bytes = v.as_bytes();
    if bytes.len() <= MAX_MESSAGE {
        return res;
    }
    // Never inside a %XX escape: one starting in the last two bytes goes whole.
    let mut cut = MAX_MESSAGE;
    if let Some(p) = bytes[cut - 2..cut].iter().position(|b| *b == b'%') {
        cut = cut - 2 + p;
    }
    let mut short = bytes[..cut].to_vec();
    short.extend_from_slice(format!("%E2%80%A6 ({} bytes cut)", bytes.len() - cut).as_bytes());
    if let Ok(h) = http::HeaderValue::from_bytes(&short) {
        res.headers_mut().insert("grpc-message", h);
    }
    res
}

/// The one place where store errors become gRPC codes.
pub fn status_of(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::NotFound { .. } => Status::not_found(msg),
        StoreError::AlreadyExists { .. } => Status::already_exists(msg),
        StoreError::Conflict { .. } => Status::aborted(msg),
        StoreError::Gone { .. } => Status::out_of_range(msg),
        StoreError::Invalid(_) => Status::invalid_argument(msg),
        StoreError::Unavailable(_) => Status::unavailable(msg),
        StoreError::Internal(_) => Status::internal(msg),
    }
}

fn kind_of(name: &str) -> Result<&'static str, Status> {
    registry::lookup(name).map(|k| k.kind).ok_or_else(|| {
        Status::invalid_argument(format!(
            "unknown kind {name:?}; known kinds: {}",
            aos_api::KINDS
                .iter()
                .map(|k| k.plural)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn to_json(o: &DynObject) -> Result<String, Status> {
    serde_json::to_string(o).map_err(|e| Status::internal(format!("failed to encode object: {e}")))
}

/// What a reader without write access sees in place of an env value (env is where tokens go).
pub const REDACTED: &str = "(redacted: reading values needs write access)";

/// The object as a reader sees it: env values of Instances hidden unless it may write.
fn for_reader(o: &DynObject, writer: bool) -> Result<String, Status> {
    if writer || o.kind != "Instance" {
        return to_json(o);
    }
    let mut o = o.clone();
    if let Some(env) = o.spec.get_mut("env").and_then(|e| e.as_array_mut()) {
        for v in env.iter_mut().filter_map(|e| e.get_mut("value")) {
            *v = REDACTED.into();
        }
    }
    to_json(&o)
}

fn selector(s: &str) -> Result<Selector, Status> {
    s.parse()
        .map_err(|e: aos_api::selector::SelectorError| Status::invalid_argument(e.to_string()))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchEvent, Status>> + Send>>;
type LogsStream = Pin<Box<dyn Stream<Item = Result<v1::LogEntry, Status>> + Send>>;

#[tonic::async_trait]
impl aos_rpc::Aosd for ApiServer {
    async fn apply(
        &self,
        req: Request<v1::ApplyRequest>,
    ) -> Result<Response<v1::ApplyResponse>, Status> {
        self.auth.check_write(&req, "apply")?;
        let uid = Auth::peer_uid(&req);
        let req = req.into_inner();
        let mut obj: DynObject = serde_json::from_str(&req.json).map_err(|e| {
            Status::invalid_argument(format!("the object is not valid JSON of a resource: {e}"))
        })?;
        if let Some(k) = registry::lookup(&obj.kind) {
            obj.kind = k.kind.to_string();
        }
        registry::validate(&obj).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Who wrote it, for controllers that act with root's rights on a writer's behalf.
        obj.metadata
            .annotations
            .insert(aos_api::kinds::APPLIED_BY.into(), uid.to_string());
        if obj.kind == "Item" && uid != 0 {
            if let Some(path) = obj.spec.pointer("/source/archive").and_then(|p| p.as_str()) {
                aos_image::source::archive_allowed(std::path::Path::new(path), &self.archive_dirs)
                    .map_err(Status::permission_denied)?;
            }
        }
        // A change is checked against what it changes (fields fixed once acted on); an object on
        // its way out takes no new configuration (the apply would look like it worked and then
        // vanish with the object).
        match self.backend.get(&obj.kind, obj.name()).await {
            Ok(live) if live.metadata.deletion_timestamp.is_none() => {
                if let Some(k) = registry::lookup(&obj.kind) {
                    (k.validate_update)(&obj, &live)
                        .map_err(|e| Status::invalid_argument(e.to_string()))?;
                }
            }
            Ok(live) => {
                return Err(Status::failed_precondition(format!(
                    "{}/{} is being deleted (waiting for {}); apply it again once it is gone",
                    obj.kind.to_ascii_lowercase(),
                    obj.name(),
                    live.metadata.finalizers.join(", ")
                )));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(status_of(e)),
        }
        let applied = self
            .backend
            .apply(obj, req.dry_run)
            .await
            .map_err(status_of)?;
        tracing::debug!(key = %applied.object.key(), outcome = applied.outcome.as_str(), dry_run = req.dry_run, "apply");
        Ok(Response::new(v1::ApplyResponse {
            json: to_json(&applied.object)?,
            outcome: applied.outcome.as_str().to_string(),
        }))
    }

    async fn get(&self, req: Request<v1::GetRequest>) -> Result<Response<v1::Resource>, Status> {
        let writer = self.auth.is_writer(&req);
        let req = req.into_inner();
        let obj = self
            .backend
            .get(kind_of(&req.kind)?, &req.name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::Resource {
            json: for_reader(&obj, writer)?,
        }))
    }

    async fn list(
        &self,
        req: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        let writer = self.auth.is_writer(&req);
        let req = req.into_inner();
        let sel = selector(&req.label_selector)?;
        let list = self
            .backend
            .list(kind_of(&req.kind)?, &sel)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::ListResponse {
            items: list
                .items
                .iter()
                .map(|o| for_reader(o, writer))
                .collect::<Result<_, _>>()?,
            resource_version: list.revision,
        }))
    }

    async fn delete(
        &self,
        req: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        self.auth.check_write(&req, "delete")?;
        let req = req.into_inner();
        let rv = Some(req.resource_version).filter(|r| *r != 0);
        let left = self
            .backend
            .delete(kind_of(&req.kind)?, &req.name, rv, req.dry_run)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::DeleteResponse {
            json: left.as_ref().map(to_json).transpose()?,
        }))
    }

    async fn delete_many(
        &self,
        req: Request<v1::DeleteManyRequest>,
    ) -> Result<Response<v1::DeleteManyResponse>, Status> {
        self.auth.check_write(&req, "delete")?;
        let req = req.into_inner();
        // A target of an unknown kind fails alone, as its own Delete would.
        let kinds: Vec<_> = req.targets.iter().map(|t| kind_of(&t.kind)).collect();
        let known: Vec<(String, String)> = req
            .targets
            .iter()
            .zip(&kinds)
            .filter_map(|(t, k)| Some((k.as_ref().ok()?.to_string(), t.name.clone())))
            .collect();
        let mut deleted = self
            .backend
            .delete_many(&known, req.dry_run)
            .await
            .into_iter();
        let mut results = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let r = match kind {
                Ok(_) => deleted
                    .next()
                    .unwrap_or_else(|| Err(StoreError::Internal("a delete went unanswered".into())))
                    .map_err(status_of),
                Err(s) => Err(s),
            };
            results.push(match r {
                Ok(left) => v1::DeleteResult {
                    json: left.as_ref().map(to_json).transpose()?,
                    ..Default::default()
                },
                Err(s) => v1::DeleteResult {
                    json: None,
                    code: s.code() as i32,
                    message: s.message().to_string(),
                },
            });
        }
        Ok(Response::new(v1::DeleteManyResponse { results }))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<v1::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let writer = self.auth.is_writer(&req);
        let req = req.into_inner();
        let kind = if req.kind.is_empty() {
            None
        } else {
            Some(kind_of(&req.kind)?)
        };
        let sel = selector(&req.label_selector)?;
        let since = Some(req.resource_version).filter(|r| *r != 0);
        let name = req.name;
        let stream = self.backend.watch(kind, since).filter_map(move |ev| {
            let out = match ev {
                Ok(ev) => {
                    let wanted = (name.is_empty() || ev.object.metadata.name == name)
                        && sel.matches(&ev.object.metadata.labels);
                    wanted.then(|| {
                        let type_ = match ev.type_ {
                            EventType::Added => "ADDED",
                            EventType::Modified => "MODIFIED",
                            EventType::Deleted => "DELETED",
                        };
                        for_reader(&ev.object, writer).map(|json| v1::WatchEvent {
                            r#type: type_.to_string(),
                            json,
                            revision: ev.revision,
                        })
                    })
                }
                Err(e) => Some(Err(status_of(e))),
            };
            futures::future::ready(out)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type LogsStream = LogsStream;

    async fn top(&self, _: Request<v1::TopRequest>) -> Result<Response<v1::TopResponse>, Status> {
        let Some(env) = self.instances.get().cloned() else {
            return Err(Status::unimplemented(
                "this node runs no container instances (yet)",
            ));
        };
        let all = aos_api::Selector::everything();
        let (instances, _) = aos_store::Api::<aos_api::InstanceSpec>::new(self.backend.clone())
            .list(&all)
            .await
            .map_err(status_of)?;
        let (nodes, _) = aos_store::Api::<aos_api::NodeSpec>::new(self.backend.clone())
            .list(&all)
            .await
            .map_err(status_of)?;
        let per_core = nodes
            .first()
            .map_or(0, |n| n.status.dmips / n.status.cpus.max(1));
        // cgroup files and volume sizes are blocking reads.
        let read = tokio::task::spawn_blocking(move || {
            aos_instance_controller::sampler::read_now(&env, &instances)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let mut usage = std::collections::HashMap::new();
        for (name, fresh) in read {
            let json = serde_json::to_string(&fresh.usage(per_core))
                .map_err(|e| Status::internal(e.to_string()))?;
            usage.insert(name, json);
        }
        Ok(Response::new(v1::TopResponse { usage }))
    }

    async fn logs(&self, req: Request<v1::LogsRequest>) -> Result<Response<LogsStream>, Status> {
        self.auth.check_write(&req, "logs")?;
        let req = req.into_inner();
        let api = aos_store::Api::<aos_api::InstanceSpec>::new(self.backend.clone());
        if api.get_opt(&req.name).await.map_err(status_of)?.is_none() {
            return Err(Status::not_found(format!(
                "instance {:?} not found",
                req.name
            )));
        }
        let since = match req.since.as_str() {
            "" => None,
            s => Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| Status::invalid_argument(format!("since {s:?}: {e}")))?
                    .with_timezone(&chrono::Utc),
            ),
        };
        let tail = usize::try_from(req.tail).ok();
        let dir = self.instances_dir.join(&req.name).join("logs");
        // Start following before reading, so that nothing falls between the two.
        let mut follower = req.follow.then(|| aos_logger::Follower::new(&dir, false));
        let first =
            aos_logger::read(&dir, tail, since).map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let name = req.name.clone();
        tokio::spawn(async move {
            for l in first {
                if tx.send(Ok(entry(l))).await.is_err() {
                    return;
                }
            }
            let Some(f) = follower.as_mut() else { return };
            loop {
                for l in f.poll() {
                    if tx.send(Ok(entry(l))).await.is_err() {
                        return;
                    }
                }
                if api.get_opt(&name).await.ok().flatten().is_none() {
                    return;
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn health(
        &self,
        _: Request<v1::HealthRequest>,
    ) -> Result<Response<v1::HealthResponse>, Status> {
        let revision = self.backend.revision().await.map_err(status_of)?;
        Ok(Response::new(v1::HealthResponse {
            // `ok`, or what is wrong with the store (damaged records, a failing file).
            status: self.backend.health().summary(),
            version: env!("CARGO_PKG_VERSION").into(),
            revision,
            node_id: self.node_id.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_error_message_is_cut_outside_an_escape_and_marked() {
        let long = "%41".repeat(2000);
        let res = http::Response::builder()
            .header("grpc-message", long.as_str())
            .body(())
            .unwrap();
        let short = bound_message(res);
        let v = short.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(v.len() < MAX_MESSAGE + 40, "{}", v.len());
        assert!(v.ends_with("bytes cut)"), "{v}");
        let kept = v.split("%E2%80%A6").next().unwrap();
        assert_eq!(kept.len() % 3, 0, "whole escapes only: {kept}");
        let fine = http::Response::builder()
            .header("grpc-message", "not found")
            .body(())
            .unwrap();
        assert_eq!(bound_message(fine).headers()["grpc-message"], "not found");
    }
}
