//! Field errors and null propagation as the GraphQL spec says them.
//!
//! async-graphql 7.2's dynamic schema drops a failed field's key from its parent object
//! instead of setting it to null, and reports the error without a path. This extension wraps
//! every field instead:
//! - a failed field's error is recorded once, with its path, and the field resolves to null;
//! - if the failed field is non-null, its path is kept as *pending*: each ancestor field, as
//!   it completes, finds the deepest nullable position between itself and the failure (a
//!   list item or the field itself) and nulls it, as the spec's null propagation prescribes;
//! - a failure no nullable ancestor absorbs nulls the whole `data` entry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo};
use async_graphql::{PathSegment, QueryPathNode, QueryPathSegment, ServerError, ServerResult, Value};

/// Per-request record of field errors and of non-null failures still looking for a null.
#[derive(Default)]
pub struct ErrorSink {
    errors: Mutex<Vec<ServerError>>,
    pending: Mutex<Vec<Vec<PathSegment>>>,
    /// Fast path: no field needs to look at `pending` while this is false.
    has_pending: AtomicBool,
}

impl ErrorSink {
    /// The recorded errors, and whether a failure reached the root (so `data` must be null).
    pub fn finish(&self) -> (Vec<ServerError>, bool) {
        let errors = std::mem::take(&mut *self.errors.lock().unwrap_or_else(PoisonError::into_inner));
        let unabsorbed = !self.pending.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
        (errors, unabsorbed)
    }
}

pub struct NullPropagation;

impl ExtensionFactory for NullPropagation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(NullPropagation)
    }
}

fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path = Vec::new();
    let mut current = Some(node);
    while let Some(n) = current {
        path.push(match n.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
            QueryPathSegment::Index(i) => PathSegment::Index(i),
        });
        current = n.parent;
    }
    path.reverse();
    path
}

/// Nullability of each position from a field down its list levels: `[[T!]]!` gives
/// `[false, true, false]` (the field, its items, their items).
fn nullability(return_type: &str) -> Vec<bool> {
    let mut out = Vec::new();
    let mut t = return_type.trim();
    loop {
        let non_null = t.ends_with('!');
        out.push(!non_null);
        t = t.trim_end_matches('!');
        match t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(inner) => t = inner,
            None => return out,
        }
    }
}

/// Nulls the deepest nullable position between this field and a failure below it. Returns
/// false when every position is non-null, so the failure must go further up.
fn absorb(value: &mut Value, nullable: &[bool], below: &[PathSegment]) -> bool {
    let indices: Vec<usize> = below
        .iter()
        .map_while(|s| match s {
            PathSegment::Index(i) => Some(*i),
            PathSegment::Field(_) => None,
        })
        .collect();
    let depth = indices.len().min(nullable.len().saturating_sub(1));
    let Some(level) = (0..=depth).rev().find(|&d| nullable[d]) else { return false };
    let mut target = value;
    for i in &indices[..level] {
        match target {
            Value::List(items) if *i < items.len() => target = &mut items[*i],
            // Already nulled by an earlier failure: nothing left to do.
            _ => return true,
        }
    }
    *target = Value::Null;
    true
}

#[async_graphql::async_trait::async_trait]
impl Extension for NullPropagation {
    /// The cost check after validation lives in `limits.rs`; it is called from here because
    /// every extension adds a layer to every field's resolution.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: async_graphql::extensions::NextValidation<'_>,
    ) -> Result<async_graphql::ValidationResult, Vec<ServerError>> {
        super::limits::validate_then_check(ctx, next).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let path_node = info.path_node;
        let return_type = info.return_type;
        let result = next.run(ctx, info).await;
        let Some(sink) = ctx.data_opt::<Arc<ErrorSink>>() else { return result };
        match result {
            Err(mut error) => {
                let path = path_of(path_node);
                if error.path.is_empty() {
                    error.path = path.clone();
                }
                sink.errors.lock().unwrap_or_else(PoisonError::into_inner).push(error);
                if return_type.ends_with('!') {
                    sink.pending.lock().unwrap_or_else(PoisonError::into_inner).push(path);
                    sink.has_pending.store(true, Ordering::Release);
                }
                Ok(Some(Value::Null))
            }
            Ok(mut value) => {
                if !sink.has_pending.load(Ordering::Acquire) {
                    return Ok(value);
                }
                let here = path_of(path_node);
                let nullable = nullability(return_type);
                let mut pending = sink.pending.lock().unwrap_or_else(PoisonError::into_inner);
                pending.retain(|failed| {
                    if failed.len() <= here.len() || failed[..here.len()] != here[..] {
                        return true;
                    }
                    let Some(v) = value.as_mut() else { return false };
                    !absorb(v, &nullable, &failed[here.len()..])
                });
                sink.has_pending.store(!pending.is_empty(), Ordering::Release);
                Ok(value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullability_of_list_levels() {
        assert_eq!(nullability("Title"), [true]);
        assert_eq!(nullability("Title!"), [false]);
        assert_eq!(nullability("[Title!]"), [true, false]);
        assert_eq!(nullability("[[Title!]]!"), [false, true, false]);
    }

    fn list(n: usize) -> Value {
        Value::List((0..n).map(|i| Value::from(i as i32)).collect())
    }

    #[test]
    fn absorbs_at_the_deepest_nullable_position() {
        let below = [PathSegment::Index(1), PathSegment::Field("rating".into())];
        // [Title]: item 1 takes the null.
        let mut v = list(3);
        assert!(absorb(&mut v, &nullability("[Title]"), &below));
        assert_eq!(v, Value::List(vec![Value::from(0), Value::Null, Value::from(2)]));
        // [Title!]: the list takes it.
        let mut v = list(3);
        assert!(absorb(&mut v, &nullability("[Title!]"), &below));
        assert_eq!(v, Value::Null);
        // [Title!]!: nothing here can, the parent must.
        let mut v = list(3);
        assert!(!absorb(&mut v, &nullability("[Title!]!"), &below));
        // An object field: the field itself.
        let mut v = Value::from(1);
        assert!(absorb(&mut v, &nullability("Title"), &[PathSegment::Field("x".into())]));
        assert_eq!(v, Value::Null);
    }
}
