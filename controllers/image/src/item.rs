//! The Item controller: resolves the image (the node's manifest, config, item config), keeps
//! one Layer per layer owned by the Item, and reports phase and progress from its Layers.

use aos_api::condition::{self as c, reason as r};
use std::sync::Arc;

use aos_api::{
    ConditionStatus, ItemPhase, ItemSpec, ItemType, LayerPhase, LayerSpec, Object, OwnerReference,
    Progress, Spec as _, API_VERSION,
};
use aos_image::oci;
use aos_image::pipeline;
use aos_image::source::{self, SourceSpec};
use aos_image::ImageError;
use aos_reconcile::{Action, Context, ControllerMetrics, Reconciler};
use aos_store::Api;

use crate::owners::{disown, owned_here};
use crate::resolved::{kept, run_config};
use crate::unit::Need;
use crate::{layer_name, ImageEnv, PipelineError, REMOVED_AT, REMOVED_ITEM};

pub struct ItemReconciler {
    env: Arc<ImageEnv>,
}

impl ItemReconciler {
    pub fn new(env: Arc<ImageEnv>) -> Self {
        ItemReconciler { env }
    }
}

/// The source an Item names.
pub fn source_spec(spec: &ItemSpec) -> Result<SourceSpec, ImageError> {
    let s = &spec.source;
    match (&s.registry, &s.http, &s.archive) {
        (Some(r), None, None) => Ok(SourceSpec::Registry(r.clone())),
        (None, Some(u), None) => Ok(SourceSpec::Http(u.clone())),
        (None, None, Some(p)) => Ok(SourceSpec::Archive(p.into())),
        _ => Err(ImageError::InvalidManifest(
            "the item must name exactly one source".into(),
        )),
    }
}

fn owner(obj: &Object<ItemSpec>) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.into(),
        kind: "Item".into(),
        name: obj.metadata.name.clone(),
        uid: obj.metadata.uid.clone().unwrap_or_default(),
        controller: None,
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

impl ItemReconciler {
    /// Records a failed resolution: on the Item, or, in a unit where another node resolved
    /// this generation, on this node's entry only (its platform is not in the index).
    async fn set_failed(&self, api: &Api<ItemSpec>, obj: &Object<ItemSpec>, e: &PipelineError) {
        use aos_reconcile::Reason;
        let (reason, msg) = (e.reason(), e.to_string());
        let generation = obj.metadata.generation;
        let _ = api
            .update_status(obj.name(), |s| {
                if let (Some(me), true) = (
                    self.env.node.as_deref(),
                    s.resolved_generation == generation,
                ) {
                    let entry = aos_api::ItemOnNode {
                        phase: ItemPhase::Failed,
                        progress: None,
                        reason: reason.to_string(),
                        message: msg.clone(),
                    };
                    return s.set_node(me, Some(entry));
                }
                s.phase = ItemPhase::Failed;
                s.common
                    .set_condition(c::READY, ConditionStatus::False, reason, &msg, now());
            })
            .await;
    }

    /// Resolves the source and records what it found. `needed`: this node runs the item;
    /// in a unit a node that does not resolves it only for what placement reads, from the
    /// index's first platform when its own is not there.
    async fn resolve(
        &self,
        obj: &Object<ItemSpec>,
        api: &Api<ItemSpec>,
        metrics: &ControllerMetrics,
        needed: bool,
    ) -> Result<(), PipelineError> {
        let name = obj.name();
        let started = std::time::Instant::now();
        api.update_status(name, |s| s.phase = ItemPhase::Resolving)
            .await?;
        let spec = source_spec(&obj.spec)?;
        // aosd reads local files as root: a writer other than root names only allowed places.
        let writer = obj.metadata.annotations.get(aos_api::kinds::APPLIED_BY);
        if let (SourceSpec::Archive(p), Some(uid)) = (&spec, writer) {
            if uid != "0" {
                source::archive_allowed(p, &self.env.archive_dirs)
                    .map_err(PipelineError::NotAllowed)?;
            }
        }
        let src = self.env.sources.open(&spec).await?;
        let r = pipeline::resolve_with(
            &*src,
            &self.env.os,
            &self.env.arch,
            obj.spec.digest.as_deref(),
            !needed,
        )
        .await?;
        let components = r
            .manifest
            .layers
            .iter()
            .filter(|l| oci::is_component(&l.media_type))
            .count();
        match obj.spec.type_ {
            ItemType::Service if components > 0 => {
                return Err(ImageError::UnsupportedMediaType(format!(
                    "{} in a service item",
                    r.manifest.layers[0].media_type
                ))
                .into())
            }
            ItemType::Component if components != r.manifest.layers.len() || components == 0 => {
                return Err(ImageError::InvalidManifest(
                    "a component item must carry component images only".into(),
                )
                .into())
            }
            _ => {}
        }
        for l in &r.manifest.layers {
            if !oci::is_component(&l.media_type) {
                oci::layer_compression(&l.media_type)?;
            }
        }
        // What the runtime would refuse only when a task starts is refused here, by field.
        if let Some(ic) = &r.item_config {
            let problems = match aos_api::ItemConfig::parse(ic) {
                Ok(c) => c.validate(),
                Err(e) => vec![e],
            };
            if !problems.is_empty() {
                let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return Err(PipelineError::InvalidConfig(text.join("; ")));
            }
        }
        // Keep the documents: the runtime reads them when it starts the item.
        self.env
            .store
            .put_meta(&r.manifest_digest, &r.manifest_bytes)?;
        self.env
            .store
            .put_meta(&r.manifest.config.digest, &r.config_bytes)?;
        if let (Some(d), Some(b)) = (&r.manifest.item_config, &r.item_config_bytes) {
            self.env.store.put_meta(&d.digest, b)?;
        }
        let summary = run_config(&r)?;
        let generation = obj.metadata.generation;
        let unit = self.env.node.as_deref();
        let took = started.elapsed();
        metrics.phase(ItemSpec::KIND, "resolve", took);
        let resolution = aos_api::Resolution {
            manifest_digest: Some(r.manifest_digest.clone()),
            config_digest: Some(r.manifest.config.digest.clone()),
            item_config_digest: r.manifest.item_config.as_ref().map(|d| d.digest.clone()),
            layers: r
                .manifest
                .layers
                .iter()
                .map(|l| layer_name(&l.digest))
                .collect(),
            config: Some(summary),
        };
        api.update_status(name, |s| {
            if s.set_resolution(&r.platform, generation, resolution.clone(), &r.offered) {
                s.phase_millis = [("resolve".to_string(), took.as_millis() as u64)].into();
            }
            match unit {
                // In a unit the nodes that fetch it say how far they are.
                Some(me) => s.set_node(me, s.nodes.get(me).cloned()),
                None => s.phase = ItemPhase::Downloading,
            }
        })
        .await?;
        Ok(())
    }

    /// Creates or adopts the Layer of one descriptor.
    async fn ensure_layer(
        &self,
        layers: &Api<LayerSpec>,
        obj: &Object<ItemSpec>,
        desc: &oci::Descriptor,
        diff_id: Option<String>,
        src: &str,
    ) -> Result<(), PipelineError> {
        let name = self.env.layer_object(&layer_name(&desc.digest));
        let me = owner(obj);
        match layers.get_opt(&name).await? {
            None => {
                let mut l = Object::new(
                    name,
                    LayerSpec {
                        digest: desc.digest.clone(),
                        diff_id,
                        media_type: desc.media_type.clone(),
                        size: desc.size,
                        sources: vec![src.to_string()],
                        node_name: self.env.node.clone(),
                    },
                );
                l.metadata.owner_references.push(me);
                layers.apply(&l).await?;
            }
            Some(mut l) => {
                let owned = l
                    .metadata
                    .owner_references
                    .iter()
                    .any(|o| o.kind == "Item" && o.name == me.name);
                let sourced = l.spec.sources.iter().any(|s| s == src);
                let cached = l.metadata.annotations.contains_key(REMOVED_ITEM);
                if owned && sourced && !cached {
                    return Ok(());
                }
                l.metadata
                    .owner_references
                    .retain(|o| !(o.kind == "Item" && o.name == me.name));
                l.metadata.owner_references.push(me);
                if !sourced {
                    l.spec.sources.push(src.to_string());
                }
                l.metadata.annotations.remove(REMOVED_ITEM);
                l.metadata.annotations.remove(REMOVED_AT);
                layers.apply(&l).await?;
            }
        }
        Ok(())
    }
}

impl ItemReconciler {
    /// In a unit, a node no instance of the Item runs on lets its copy go: its Layers are
    /// disowned (cached for the TTL) and its entry leaves the status.
    async fn let_go(
        &self,
        obj: &Object<ItemSpec>,
        ctx: &Context<ItemSpec>,
        me: &str,
    ) -> Result<Action, PipelineError> {
        let layers = Api::<LayerSpec>::new(ctx.backend.clone());
        let (all, _) = layers.list(&aos_api::Selector::everything()).await?;
        let mine = owned_here(&all, obj.name(), Some(me));
        disown(&layers, obj, mine.into_iter()).await?;
        if obj.status.nodes.contains_key(me) {
            ctx.api
                .update_status(obj.name(), |s| s.set_node(me, None))
                .await?;
        }
        Ok(Action::AwaitChange)
    }
}

impl Reconciler for ItemReconciler {
    type Kind = ItemSpec;
    type Error = PipelineError;

    fn finalizer(&self) -> Option<&'static str> {
        Some("aos.edge/item")
    }

    async fn apply(
        &self,
        obj: Arc<Object<ItemSpec>>,
        ctx: &Context<ItemSpec>,
    ) -> Result<Action, PipelineError> {
        let name = obj.name().to_string();
        let layers = Api::<LayerSpec>::new(ctx.backend.clone());
        let mut status = obj.status.clone();
        let unit = self.env.node.as_deref();
        // In a unit a node fetches only what it runs; any node resolves (placement reads the
        // resolution).
        let need = match unit {
            Some(me) => crate::unit::needed_on(&ctx.backend, &obj, me).await?,
            None => Need::Yes,
        };
        let needed = need != Need::No;
        if status.resolved_generation != obj.metadata.generation
            || (needed && kept(&self.env, &status).is_none())
        {
            if let Err(e) = self.resolve(&obj, &ctx.api, &ctx.metrics, needed).await {
                self.set_failed(&ctx.api, &obj, &e).await;
                return Err(e);
            }
            status = ctx.api.get(&name).await?.status;
        }
        if let (false, Some(me)) = (needed, unit) {
            return self.let_go(&obj, ctx, me).await;
        }
        let Some((manifest, diff_ids)) = kept(&self.env, &status) else {
            return Err(
                ImageError::InvalidManifest("the resolved manifest is not on disk".into()).into(),
            );
        };
        let src = source_spec(&obj.spec)?.repository().to_string();
        for (i, desc) in manifest.layers.iter().enumerate() {
            let diff_id = (!oci::is_component(&desc.media_type))
                .then(|| diff_ids.get(i).cloned())
                .flatten();
            self.ensure_layer(&layers, &obj, desc, diff_id, &src)
                .await?;
        }
        // Layers of an image this Item named before (its spec changed) are no longer its own.
        let current: std::collections::HashSet<String> = manifest
            .layers
            .iter()
            .map(|d| self.env.layer_object(&layer_name(&d.digest)))
            .collect();
        let (all, _) = layers.list(&aos_api::Selector::everything()).await?;
        let stale = owned_here(&all, &name, unit)
            .into_iter()
            .filter(|l| !current.contains(l));
        disown(&layers, &obj, stale).await?;
        crate::trim_versions(
            &ctx.backend,
            unit,
            &obj.spec.item_id,
            self.env.versions_per_item,
        )
        .await?;

        // Phase and progress from the Layers.
        let (mut done, mut total, mut ready, mut failed) = (0u64, 0u64, 0usize, None);
        for desc in &manifest.layers {
            total += desc.size;
            let Some(l) = layers
                .get_opt(&self.env.layer_object(&layer_name(&desc.digest)))
                .await?
            else {
                continue;
            };
            match l.status.phase {
                LayerPhase::Ready => {
                    ready += 1;
                    done += desc.size;
                }
                LayerPhase::Failed => {
                    let c = l.status.common.condition(c::READY);
                    failed = Some((
                        l.name().to_string(),
                        c.map(|c| c.reason.clone())
                            .unwrap_or_else(|| "LayerFailed".into()),
                        c.map(|c| c.message.clone()).unwrap_or_default(),
                    ));
                    done += l.status.downloaded_bytes.unwrap_or(0).min(desc.size);
                }
                _ => done += l.status.downloaded_bytes.unwrap_or(0).min(desc.size),
            }
        }
        let mut all_ready = ready == manifest.layers.len();
        if all_ready {
            // Each layer was checked alone; the stack is checked as overlayfs will see it.
            let records: Vec<_> = diff_ids
                .iter()
                .filter_map(|d| self.env.store.record(d))
                .collect();
            let indexes: Vec<_> = records.iter().map(|r| &r.index).collect();
            if let Err(why) = aos_image::stack::check_stack(&indexes) {
                all_ready = false;
                failed = Some((String::new(), "HostileLayer".into(), why));
            }
        }
        let was = obj.status.phase_on(unit);
        // From the apply (or the spec change) to every layer stored.
        let pulled = (all_ready && was != ItemPhase::Ready)
            .then(|| {
                let since = obj.metadata.creation_timestamp?;
                (now() - since).to_std().ok()
            })
            .flatten();
        if let Some(took) = pulled {
            ctx.metrics.phase(ItemSpec::KIND, "pull", took);
        }
        if all_ready && was != ItemPhase::Ready {
            ctx.events.normal(
                &obj,
                r::PULLED,
                format!(
                    "{} layers ({total} bytes) verified and stored",
                    manifest.layers.len()
                ),
            );
        } else if let (Some((layer, reason, message)), false) = (&failed, all_ready) {
            if was != ItemPhase::Failed {
                ctx.events
                    .warning(&obj, reason, format!("layer {layer}: {message}"));
            }
        }
        let progress = Progress {
            done_bytes: done,
            total_bytes: total,
        };
        let (phase, status, reason, message) = if all_ready {
            (
                ItemPhase::Ready,
                ConditionStatus::True,
                r::LAYERS_READY.to_string(),
                "every layer is verified and stored".to_string(),
            )
        } else if let Some((layer, reason, message)) = failed {
            let message = if layer.is_empty() {
                message
            } else {
                format!("layer {layer}: {message}")
            };
            (ItemPhase::Failed, ConditionStatus::False, reason, message)
        } else {
            let n = manifest.layers.len();
            (
                ItemPhase::Downloading,
                ConditionStatus::False,
                r::DOWNLOADING.to_string(),
                format!("{ready} of {n} layers ready"),
            )
        };
        ctx.api
            .update_status(&name, |s| {
                if let Some(took) = pulled {
                    s.phase_millis
                        .insert("pull".to_string(), took.as_millis() as u64);
                }
                let Some(me) = unit else {
                    s.progress = Some(progress.clone());
                    s.phase = phase;
                    s.common
                        .set_condition(c::READY, status, &reason, &message, now());
                    return;
                };
                let entry = aos_api::ItemOnNode {
                    phase,
                    progress: Some(progress.clone()),
                    reason: reason.clone(),
                    message: message.clone(),
                };
                s.set_node(me, Some(entry));
            })
            .await?;
        Ok(match need {
            // Its last instances here are being removed: let go once they are gone.
            Need::Leaving => Action::Requeue(std::time::Duration::from_secs(2)),
            _ => Action::AwaitChange,
        })
    }

    async fn cleanup(
        &self,
        obj: Arc<Object<ItemSpec>>,
        ctx: &Context<ItemSpec>,
    ) -> Result<Action, PipelineError> {
        let layers = Api::<LayerSpec>::new(ctx.backend.clone());
        let mine = obj.status.all_layers();
        disown(&layers, &obj, mine.iter().map(|l| self.env.layer_object(l))).await?;
        Ok(Action::AwaitChange)
    }
}
