//! The store of aosd: every resource, one revision counter, compare-and-swap on
//! `resourceVersion`, `generation` that moves only with the spec, a separate status write path,
//! finalizers and `deletionTimestamp`, and watches that replay a bounded event log.
//!
//! [`Backend`] is the one trait every backend implements; [`conformance`] is the suite each must
//! pass; [`embedded::Embedded`] is the default backend (one redb file, or memory for tests);
//! [`Api`] is the typed view controllers use.

pub mod conformance;
pub mod embedded;
mod error;
pub mod plan;
mod typed;
mod types;

pub use embedded::{Damage, Embedded, EmbeddedOptions, OpenReport};
pub use error::StoreError;
pub use typed::{Api, TypedEvent};
pub use types::*;

use aos_api::{DynObject, Revision, Selector};
use futures::stream::BoxStream;

/// What every store backend guarantees:
/// - one monotonically increasing revision; each write that changes something gets the next one
///   and it becomes the object's `resourceVersion`;
/// - a write that names a `resourceVersion` succeeds only if it is still the current one
///   (`Conflict` otherwise);
/// - an acknowledged write is durable and is seen by every later read and watch;
/// - `delete` of an object with finalizers only sets `deletionTimestamp`; the object goes when
///   its last finalizer is removed;
/// - `watch(Some(rev))` delivers, in revision order and without gaps, every event after `rev`,
///   or fails with `Gone` when the log no longer reaches back that far.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn get(&self, kind: &str, name: &str) -> Result<DynObject, StoreError>;

    /// Objects of one kind matching the selector, and the revision they were read at.
    async fn list(&self, kind: &str, selector: &Selector) -> Result<ObjectList, StoreError>;

    /// Creates, or updates by name: spec, labels, annotations and owner references come from
    /// `obj`, finalizers are added to those present; status and server fields are kept.
    /// A non-zero `obj.metadata.resourceVersion` makes it compare-and-swap.
    async fn apply(&self, obj: DynObject, dry_run: bool) -> Result<Applied, StoreError>;

    /// Creates `obj`, or fails with `AlreadyExists` (for a name only one writer may take).
    async fn create(&self, obj: DynObject) -> Result<DynObject, StoreError>;

    /// Replaces the status only (never `generation`).
    async fn update_status(
        &self,
        kind: &str,
        name: &str,
        status: serde_json::Value,
        resource_version: Option<Revision>,
    ) -> Result<DynObject, StoreError>;

    /// Replaces the finalizers; `None` when that removed the object.
    async fn set_finalizers(
        &self,
        kind: &str,
        name: &str,
        finalizers: Vec<String>,
        resource_version: Option<Revision>,
    ) -> Result<Option<DynObject>, StoreError>;

    /// Deletes, or marks for deletion while finalizers remain (then returns the object).
    async fn delete(
        &self,
        kind: &str,
        name: &str,
        resource_version: Option<Revision>,
        dry_run: bool,
    ) -> Result<Option<DynObject>, StoreError>;

    /// Deletes (or marks) each `(kind, name)` of `targets` as [`Backend::delete`] without a
    /// resource version, in the order given: each change takes a later revision than the one
    /// before it. One result per target; one that fails stops none of the others. A backend
    /// may commit them together (the embedded store does, in its group commit); this default
    /// deletes one at a time.
    async fn delete_many(
        &self,
        targets: &[(String, String)],
        dry_run: bool,
    ) -> Vec<Result<Option<DynObject>, StoreError>> {
        let mut out = Vec::with_capacity(targets.len());
        for (kind, name) in targets {
            out.push(self.delete(kind, name, None, dry_run).await);
        }
        out
    }

    /// Events of one kind (or all with `None`) after `since`; `None` means from now on.
    fn watch(
        &self,
        kind: Option<&str>,
        since: Option<Revision>,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>>;

    /// The current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Whether the store works, and which records it found damaged.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }
}
