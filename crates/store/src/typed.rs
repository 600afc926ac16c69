//! The typed view of one kind over any backend: what controllers use.

use std::marker::PhantomData;
use std::sync::Arc;

use aos_api::{status_value, Object, Revision, Selector, Spec, ValidationErrors};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::{Applied, Backend, EventType, Outcome, StoreError, WatchEvent};

/// A typed watch event.
#[derive(Clone, Debug)]
pub struct TypedEvent<S: Spec> {
    pub type_: EventType,
    pub revision: Revision,
    pub object: Object<S>,
}

/// Typed access to the objects of kind `S`.
pub struct Api<S: Spec> {
    backend: Arc<dyn Backend>,
    _kind: PhantomData<fn() -> S>,
}

impl<S: Spec> Clone for Api<S> {
    fn clone(&self) -> Self {
        Api {
            backend: self.backend.clone(),
            _kind: PhantomData,
        }
    }
}

fn typed<S: Spec>(obj: &aos_api::DynObject) -> Result<Object<S>, StoreError> {
    Object::<S>::from_dyn(obj).map_err(|e: ValidationErrors| {
        StoreError::Internal(format!(
            "stored {} {:?} does not decode: {e}",
            S::KIND,
            obj.metadata.name
        ))
    })
}

impl<S: Spec> Api<S> {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Api {
            backend,
            _kind: PhantomData,
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub async fn get(&self, name: &str) -> Result<Object<S>, StoreError> {
        typed(&self.backend.get(S::KIND, name).await?)
    }

    /// The object, or `None` when there is none.
    pub async fn get_opt(&self, name: &str) -> Result<Option<Object<S>>, StoreError> {
        match self.get(name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list(
        &self,
        selector: &Selector,
    ) -> Result<(Vec<Object<S>>, Revision), StoreError> {
        let l = self.backend.list(S::KIND, selector).await?;
        // One object that does not read as its kind (stored by another version, say) is
        // skipped and logged: the rest of its kind must not stall with it.
        let items = l
            .items
            .iter()
            .filter_map(|o| match typed(o) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "skipping an object that does not read as its kind");
                    None
                }
            })
            .collect();
        Ok((items, l.revision))
    }

    /// Creates or updates by name (spec, labels, annotations, owners); checks the spec first.
    pub async fn apply(&self, obj: &Object<S>) -> Result<(Object<S>, Outcome), StoreError> {
        let mut errors = Vec::new();
        obj.spec.validate(&mut errors);
        ValidationErrors::check(errors)?;
        let Applied { object, outcome } = self.backend.apply(obj.to_dyn(), false).await?;
        Ok((typed(&object)?, outcome))
    }

    /// Changes the status with `f` on the latest object, retrying on conflicts. Nothing is
    /// written when `f` leaves the status as it was.
    pub async fn update_status(
        &self,
        name: &str,
        mut f: impl FnMut(&mut S::Status) + Send,
    ) -> Result<Object<S>, StoreError> {
        let mut attempt = 0;
        loop {
            let cur = self.get(name).await?;
            let mut status = cur.status.clone();
            f(&mut status);
            if status == cur.status {
                return Ok(cur);
            }
            let rv = Some(cur.metadata.resource_version);
            match self
                .backend
                .update_status(S::KIND, name, status_value(&status), rv)
                .await
            {
                Ok(o) => return typed(&o),
                Err(e) if e.is_conflict() && attempt < 10 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Replaces the finalizers if the object is still at `rv`; `None` when that removed it.
    pub async fn set_finalizers(
        &self,
        name: &str,
        finalizers: Vec<String>,
        rv: Option<Revision>,
    ) -> Result<Option<Object<S>>, StoreError> {
        self.backend
            .set_finalizers(S::KIND, name, finalizers, rv)
            .await?
            .as_ref()
            .map(typed)
            .transpose()
    }

    pub async fn delete(&self, name: &str) -> Result<Option<Object<S>>, StoreError> {
        self.backend
            .delete(S::KIND, name, None, false)
            .await?
            .as_ref()
            .map(typed)
            .transpose()
    }

    pub fn watch(
        &self,
        since: Option<Revision>,
    ) -> BoxStream<'static, Result<TypedEvent<S>, StoreError>> {
        self.backend
            .watch(Some(S::KIND), since)
            .map(|r| {
                r.and_then(
                    |WatchEvent {
                         type_,
                         revision,
                         object,
                     }| {
                        Ok(TypedEvent {
                            type_,
                            revision,
                            object: typed(&object)?,
                        })
                    },
                )
            })
            .boxed()
    }
}
