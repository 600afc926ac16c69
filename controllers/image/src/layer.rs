//! The Layer controller: fetches one blob once (resuming a partial download), verifies it,
//! converts service layers into mounted squashfs images (components stay verified blobs),
//! re-checks them at rest, keeps orphaned layers for the removed-item TTL, and makes room by
//! evicting cached layers oldest first before failing with NotEnoughSpace.

use aos_api::condition::{self as c, reason as r};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_api::{ConditionStatus, LayerPhase, LayerSpec, Object, Spec as _};
use aos_image::oci;
use aos_image::pipeline::{self, LayerWanted};
use aos_image::source::SourceSpec;
use aos_image::ImageError;
use aos_reconcile::{Action, Context, ControllerMetrics, Reconciler};
use aos_store::Api;

use crate::{ImageEnv, PipelineError, REMOVED_AT, REMOVED_ITEM};

pub struct LayerReconciler {
    env: Arc<ImageEnv>,
}

/// Squashfs image bytes per compressed blob byte assumed before this node has measured its own
/// (lz4 squashfs against gzip tar, on typical root filesystems).
pub const DEFAULT_RATIO: f64 = 1.2;

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn removed_at(l: &Object<LayerSpec>) -> Option<chrono::DateTime<chrono::Utc>> {
    l.metadata.annotations.get(REMOVED_AT)?.parse().ok()
}

impl LayerReconciler {
    pub fn new(env: Arc<ImageEnv>) -> Self {
        LayerReconciler { env }
    }

    fn is_component(l: &LayerSpec) -> bool {
        oci::is_component(&l.media_type)
    }

    /// Room a layer still needs while it is installed, given how much of its blob is on disk
    /// and how much of its image was written: the rest of the blob, and the rest of an image
    /// estimated at the measured conversion ratio of this node's layers (see
    /// [`DEFAULT_RATIO`]). Both sit on disk together until the blob is removed.
    fn room(env: &ImageEnv, l: &LayerSpec, downloaded: u64, image_written: u64) -> u64 {
        let blob = l.size.saturating_sub(downloaded);
        if Self::is_component(l) {
            return blob + (1 << 20);
        }
        let ratio = env
            .store
            .conversion_ratio()
            .map_or(DEFAULT_RATIO, |r| r.clamp(0.25, 4.0));
        let image = (l.size as f64 * ratio) as u64;
        blob + image.saturating_sub(image_written) + (1 << 20)
    }

    fn files_of(&self, l: &LayerSpec) {
        if let Some(d) = &l.diff_id {
            let _ = self.env.store.remove_layer(d);
        }
        let _ = self.env.store.remove_blob(&l.digest);
    }

    /// Reserves room, evicting cached (ownerless) layers oldest first when short.
    async fn reserve(
        &self,
        me: &Object<LayerSpec>,
        api: &Api<LayerSpec>,
    ) -> Result<aos_image::space::Reservation, PipelineError> {
        let partial = self
            .env
            .store
            .partial_path(&me.spec.digest)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        let need = Self::room(&self.env, &me.spec, partial, 0);
        loop {
            match self.env.space.reserve(need) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    let (all, _) = api.list(&aos_api::Selector::everything()).await?;
                    let mut cached: Vec<_> = all
                        .into_iter()
                        .filter(|l| {
                            l.metadata.owner_references.is_empty()
                                && l.name() != me.name()
                                && self.env.keeps(&l.spec)
                        })
                        .collect();
                    cached.sort_by_key(removed_at);
                    let Some(victim) = cached.into_iter().next() else {
                        return Err(e.into());
                    };
                    tracing::info!(
                        layer = victim.name(),
                        need,
                        "evicting a cached layer to make room"
                    );
                    self.files_of(&victim.spec);
                    let _ = api.delete(victim.name()).await;
                }
            }
        }
    }

    /// Fetches and stores the layer; also returns the milliseconds of each phase (recorded
    /// in `metrics` too).
    async fn install(
        &self,
        l: &Object<LayerSpec>,
        api: &Api<LayerSpec>,
        metrics: &ControllerMetrics,
    ) -> Result<(Option<String>, u64, String, BTreeMap<String, u64>), PipelineError> {
        let room = Arc::new(self.reserve(l, api).await?);
        let done = Arc::new(AtomicU64::new(0));
        let name = l.name().to_string();
        // Progress goes to the status twice a second while the work runs, and the reservation
        // shrinks by what has landed on disk (the filesystem counts that now).
        let reporter = {
            let (done, api, name) = (done.clone(), api.clone(), name.clone());
            let (room, me, spec) = (room.clone(), self.env.clone(), l.spec.clone());
            tokio::spawn(async move {
                let mut last = u64::MAX;
                let image = spec
                    .diff_id
                    .as_deref()
                    .map(|d| me.store.tmp_path(d.trim_start_matches("sha256:")));
                loop {
                    let written = image
                        .as_ref()
                        .and_then(|p| std::fs::metadata(p).ok())
                        .map_or(0, |m| m.len());
                    let left = Self::room(&me, &spec, done.load(Ordering::Relaxed), written);
                    if left < room.bytes() {
                        let _ = room.resize(left);
                    }
                    let now = done.load(Ordering::Relaxed);
                    if now != last {
                        last = now;
                        let _ = api
                            .update_status(&name, |s| {
                                s.phase = LayerPhase::Downloading;
                                s.downloaded_bytes = Some(now);
                            })
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        let progress = move |n: u64| done.store(n, Ordering::Relaxed);
        let wanted = LayerWanted {
            digest: l.spec.digest.clone(),
            diff_id: l.spec.diff_id.clone().unwrap_or_default(),
            media_type: l.spec.media_type.clone(),
            size: l.spec.size,
        };
        let mut last_err = ImageError::InvalidManifest(format!("layer {} has no source", l.name()));
        let mut result = None;
        for s in &l.spec.sources {
            let attempt = async {
                let src = self.env.sources.open(&s.parse::<SourceSpec>()?).await?;
                let started = std::time::Instant::now();
                if Self::is_component(&l.spec) {
                    let path = pipeline::install_component(
                        &self.env.store,
                        &*src,
                        &wanted,
                        &self.env.retry,
                        &progress,
                    )
                    .await?;
                    let took = started.elapsed();
                    Ok::<_, ImageError>((
                        Some(path.display().to_string()),
                        l.spec.size,
                        l.spec.digest.clone(),
                        Some(pipeline::LayerTimings {
                            download: took,
                            ..Default::default()
                        }),
                    ))
                } else {
                    let (rec, timings) = pipeline::install_service_layer(
                        &self.env.store,
                        &*src,
                        &wanted,
                        &self.env.retry,
                        &self.env.convert,
                        &progress,
                    )
                    .await?;
                    Ok((None, rec.unpacked_size, rec.at_rest_digest, timings))
                }
            };
            match attempt.await {
                Ok(r) => {
                    result = Some(r);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        reporter.abort();
        let (path, unpacked, at_rest, timings) = result.ok_or(last_err)?;
        let mut ms = BTreeMap::new();
        if let Some(t) = timings {
            metrics.downloaded(LayerSpec::KIND, l.spec.size);
            for (phase, took) in [
                ("download", t.download),
                ("unpack", t.unpack),
                ("verify", t.verify),
            ] {
                if !took.is_zero() {
                    metrics.phase(LayerSpec::KIND, phase, took);
                    ms.insert(phase.to_string(), took.as_millis() as u64);
                }
            }
        }
        Ok((path, unpacked, at_rest, ms))
    }
}

/// Drops the owners of `l` that are gone or being deleted, marking a Layer left without any as
/// cached; whether it wrote. (In a unit only one node runs a deleted Item's cleanup: the other
/// nodes' copies learn it here. On a node of its own it heals a cleanup that never ran.)
async fn drop_gone_owners(
    l: &Object<LayerSpec>,
    ctx: &Context<LayerSpec>,
) -> Result<bool, PipelineError> {
    let items = Api::<aos_api::ItemSpec>::new(ctx.backend.clone());
    let (mut gone, mut tag, mut marked_at) = (Vec::new(), None, None);
    for o in l
        .metadata
        .owner_references
        .iter()
        .filter(|o| o.kind == "Item")
    {
        match items.get_opt(&o.name).await? {
            Some(i) if !o.uid.is_empty() && i.metadata.uid.as_deref() != Some(o.uid.as_str()) => {
                gone.push(o.name.clone())
            }
            Some(i) if i.metadata.deletion_timestamp.is_some() => {
                gone.push(o.name.clone());
                tag = Some(format!("{}:{}", i.spec.item_id, i.spec.version));
                marked_at = marked_at.max(i.metadata.deletion_timestamp);
            }
            Some(_) => {}
            None => gone.push(o.name.clone()),
        }
    }
    if gone.is_empty() {
        return Ok(false);
    }
    let mut l = l.clone();
    l.metadata
        .owner_references
        .retain(|o| !(o.kind == "Item" && gone.contains(&o.name)));
    if l.metadata.owner_references.is_empty() {
        if let Some(t) = tag {
            l.metadata.annotations.insert(REMOVED_ITEM.into(), t);
        }
        // The owner's deletion mark where it is still there (as the Item's own cleanup does).
        let at = marked_at.unwrap_or_else(now);
        l.metadata
            .annotations
            .insert(REMOVED_AT.into(), at.to_rfc3339());
    }
    tracing::info!(layer = l.name(), owners = ?gone, ?marked_at, "dropping owners that are gone");
    ctx.api.apply(&l).await?;
    Ok(true)
}

impl Reconciler for LayerReconciler {
    type Kind = LayerSpec;
    type Error = PipelineError;

    fn finalizer(&self) -> Option<&'static str> {
        Some("aos.edge/layer")
    }

    /// In a unit, each node keeps (and reconciles) only its own copies.
    fn owns(&self, obj: &Object<LayerSpec>) -> bool {
        self.env.keeps(&obj.spec)
    }

    async fn apply(
        &self,
        obj: Arc<Object<LayerSpec>>,
        ctx: &Context<LayerSpec>,
    ) -> Result<Action, PipelineError> {
        let name = obj.name().to_string();
        let spec = &obj.spec;
        if drop_gone_owners(&obj, ctx).await? {
            return Ok(Action::AwaitChange);
        }
        // An orphan is kept (cached) only if it is complete, and only for the TTL.
        if obj.metadata.owner_references.is_empty() {
            // Within the versions kept of its item id? (Level-triggered: a deleted Item's
            // layers come here as they are disowned, and at every resync.)
            if let Some(item_id) = obj
                .metadata
                .annotations
                .get(REMOVED_ITEM)
                .and_then(|t| t.rsplit_once(':'))
                .map(|(id, _)| id)
            {
                crate::trim_versions(
                    &ctx.backend,
                    self.env.node.as_deref(),
                    item_id,
                    self.env.versions_per_item,
                )
                .await?;
                if ctx
                    .api
                    .get_opt(&name)
                    .await?
                    .is_none_or(|l| l.metadata.deletion_timestamp.is_some())
                {
                    return Ok(Action::AwaitChange);
                }
            }
            let since = removed_at(&obj);
            let expired = since.is_none_or(|t| {
                now() - t > chrono::Duration::from_std(self.env.removed_ttl).unwrap_or_default()
            });
            if expired || obj.status.phase != LayerPhase::Ready {
                tracing::info!(layer = name, "removing a layer no item needs");
                ctx.api.delete(&name).await?;
                return Ok(Action::AwaitChange);
            }
            let left = self.env.removed_ttl.saturating_sub(
                (now() - since.unwrap_or_else(now))
                    .to_std()
                    .unwrap_or_default(),
            );
            return Ok(Action::Requeue(left.max(Duration::from_secs(1))));
        }

        // Already there?
        let installed = if Self::is_component(spec) {
            let p = self.env.store.blob_path(&spec.digest)?;
            p.exists().then(|| {
                (
                    Some(p.display().to_string()),
                    spec.size,
                    spec.digest.clone(),
                )
            })
        } else {
            let diff = spec.diff_id.as_deref().unwrap_or_default();
            self.env
                .store
                .record(diff)
                .map(|r| (None, r.unpacked_size, r.at_rest_digest))
        };
        let (path, unpacked, at_rest, phase_millis) = match installed {
            Some((p, u, a)) => (p, u, a, BTreeMap::new()),
            None => match self.install(&obj, &ctx.api, &ctx.metrics).await {
                Ok(i) => i,
                Err(e) => {
                    use aos_reconcile::Reason;
                    let (reason, msg) = (e.reason(), e.to_string());
                    ctx.api
                        .update_status(&name, |s| {
                            s.phase = LayerPhase::Failed;
                            s.common.set_condition(
                                c::READY,
                                ConditionStatus::False,
                                reason,
                                &msg,
                                now(),
                            );
                        })
                        .await?;
                    return Err(e);
                }
            },
        };
        // Re-check at rest when due; a tampered layer is thrown away and fetched again.
        let due = obj.status.verified_at.is_none_or(|t| {
            now() - t > chrono::Duration::from_std(self.env.integrity_interval).unwrap_or_default()
        });
        let mut verified_at = obj.status.verified_at;
        if due && obj.status.phase == LayerPhase::Ready {
            let intact = if Self::is_component(spec) {
                let p = self.env.store.blob_path(&spec.digest)?;
                let d = tokio::task::spawn_blocking(move || aos_image::convert::file_digest(&p))
                    .await
                    .ok()
                    .and_then(Result::ok);
                d.is_some_and(|(d, _)| d == spec.digest)
            } else {
                let (store, diff) = (
                    self.env.store.clone(),
                    spec.diff_id.clone().unwrap_or_default(),
                );
                tokio::task::spawn_blocking(move || store.verify_at_rest(&diff))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(false)
            };
            if !intact {
                tracing::warn!(
                    layer = name,
                    "stored layer does not match its digest; fetching it again"
                );
                self.files_of(spec);
                ctx.events.warning(
                    &obj,
                    r::TAMPERED,
                    "the stored layer does not match its digest; fetching it again",
                );
                ctx.api
                    .update_status(&name, |s| {
                        s.phase = LayerPhase::Pending;
                        s.verified_at = None;
                        s.common.set_condition(
                            c::READY,
                            ConditionStatus::False,
                            r::TAMPERED,
                            "the stored layer changed; fetching it again",
                            now(),
                        );
                    })
                    .await?;
                return Ok(Action::Requeue(Duration::from_millis(10)));
            }
            verified_at = Some(now());
        } else if obj.status.phase != LayerPhase::Ready {
            verified_at = Some(now());
        }
        let path = match path {
            Some(p) => p,
            None => self
                .env
                .store
                .mount(spec.diff_id.as_deref().unwrap_or_default())?
                .display()
                .to_string(),
        };
        ctx.api
            .update_status(&name, |s| {
                s.phase = LayerPhase::Ready;
                s.path = Some(path.clone());
                s.downloaded_bytes = Some(spec.size);
                s.unpacked_size = Some(unpacked);
                s.tree_digest = Some(at_rest.clone());
                s.verified_at = verified_at;
                if !phase_millis.is_empty() {
                    s.phase_millis = phase_millis.clone();
                }
                s.common.set_condition(
                    c::READY,
                    ConditionStatus::True,
                    r::STORED,
                    "verified and stored",
                    now(),
                );
            })
            .await?;
        Ok(Action::Requeue(self.env.integrity_interval))
    }

    async fn cleanup(
        &self,
        obj: Arc<Object<LayerSpec>>,
        _ctx: &Context<LayerSpec>,
    ) -> Result<Action, PipelineError> {
        if let Some(d) = &obj.spec.diff_id {
            self.env.store.remove_layer(d)?;
        }
        self.env.store.remove_blob(&obj.spec.digest)?;
        Ok(Action::AwaitChange)
    }
}
