//! Planning one `@http` field's fetch for one parent: the route rendered from its template,
//! the keys read from the parent, the limit argument applied. The executor (`exec.rs`) calls
//! this for every step's parents.

use async_graphql::{Error as GqlError, ErrorExtensions};
use serde_json::Value;

use super::model::*;
use super::route;
use crate::backends::json::keep::KeepRef;
use crate::backends::json::tape::{Val, View};
use crate::backends::{BatchRoute, FetchError, Key, SingleRequest};
use crate::errors::Code;

pub fn fetch_error(e: &FetchError) -> GqlError {
    let code = e.code().as_str();
    GqlError::new(e.to_string()).extend_with(|_, ext| ext.set("code", code))
}

pub fn bad_value(path: &str, message: String) -> GqlError {
    GqlError::new(format!("{path}: {message}"))
        .extend_with(|_, ext| ext.set("code", Code::BackendError.as_str()))
}

pub type Args = serde_json::Map<String, Value>;

/// What one `@http` field needs fetched for one parent.
pub enum Fetch {
    Single(SingleRequest),
    Batch(BatchRoute, Vec<Key>),
    /// The parent holds no key: the field is null without a fetch.
    Nothing,
}

/// Renders a route template; a value that would change the route fails the field.
fn render(path: &str, parts: &[Part], args: &Args, parent: Val<'_>) -> Result<route::Rendered, GqlError> {
    route::render(parts, args, parent).map_err(|e| route_error(path, &e))
}

fn route_error(path: &str, e: &route::RouteError) -> GqlError {
    let code = if e.from_arguments() { Code::BadUserInput } else { Code::BackendError };
    GqlError::new(format!("{path}: {e}")).extend_with(|_, ext| ext.set("code", code.as_str()))
}

/// Plans the fetch of an `@http` field for one parent: the same plan whichever executor
/// asks, so both meet in the batcher's cache.
/// A null or unset limit argument fetches `default_list_size` keys: what the cost counted.
pub fn plan_fetch(
    path: &str,
    http: &HttpBinding,
    args: &Args,
    parent: Val<'_>,
    default_list_size: usize,
    keep: Option<&KeepRef>,
) -> Result<Fetch, GqlError> {
    let Some(batch) = &http.batch else {
        let route = render(path, &http.template.parts, args, parent)?.before;
        let body = match http.template.method {
            Method::Post => Some(Value::Object(args.clone()).to_string()),
            Method::Get => None,
        };
        return Ok(Fetch::Single(SingleRequest {
            backend: http.backend,
            method: http.template.method,
            path: route,
            body,
            keep: keep.cloned(),
        }));
    };
    let mut keys = Vec::new();
    let limit = key_limit(path, http, args, default_list_size);
    if batch_keys(path, batch, &limit, parent, &mut keys)?.is_none() {
        return Ok(Fetch::Nothing);
    }
    let (route, keys_in_path) = batch_route(path, http, batch, args, parent, keep)?;
    check_keys(path, &keys, keys_in_path)?;
    Ok(Fetch::Batch(route, keys))
}

/// Appends the keys a batched field fetches for this parent (its limit argument applied) to
/// `out` (a step's parents share one vector): how many, or `None` when the parent holds no key.
#[inline(always)]
pub fn batch_keys(
    path: &str,
    batch: &BatchSpec,
    limit: &Result<usize, GqlError>,
    parent: Val<'_>,
    out: &mut Vec<Key>,
) -> Result<Option<usize>, GqlError> {
    let raw = match parent.get(&batch.keys_from) {
        Some(v) if !v.is_null() => v,
        _ => return Ok(None),
    };
    if batch.keys_are_list && !raw.is_list() {
        return Err(bad_value(path, format!("key field {} should be a list, got {raw}", batch.keys_from)));
    }
    let limit = match limit {
        Ok(n) => *n,
        Err(e) => return Err(e.clone()),
    };
    let start = out.len();
    match raw.view() {
        View::List(items) if batch.keys_are_list => out.extend(items.filter_map(Key::of).take(limit)),
        _ => {
            if let Some(key) = Key::of(raw).filter(|_| limit > 0) {
                out.push(key);
            }
        }
    }
    Ok(Some(out.len() - start))
}

/// How many keys a batched field takes from each parent: its limit argument (the same for
/// every parent of a step, so read once per step), or no limit.
pub fn key_limit(
    path: &str,
    http: &HttpBinding,
    args: &Args,
    default_list_size: usize,
) -> Result<usize, GqlError> {
    match &http.limit_arg {
        None => Ok(usize::MAX),
        Some(limit) => match args.get(limit) {
            None | Some(Value::Null) => Ok(default_list_size),
            Some(v) => v.as_i64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                GqlError::new(format!("{path}: argument {limit} must not be negative"))
                    .extend_with(|_, ext| ext.set("code", Code::BadUserInput.as_str()))
            }),
        },
    }
}

/// A batched field's route for these arguments and parent, and whether its keys sit in the
/// path. A template without `{$parent…}` renders the same for every parent.
pub fn batch_route(
    path: &str,
    http: &HttpBinding,
    batch: &BatchSpec,
    args: &Args,
    parent: Val<'_>,
    keep: Option<&KeepRef>,
) -> Result<(BatchRoute, bool), GqlError> {
    let rendered = render(path, &http.template.parts, args, parent)?;
    let route = BatchRoute {
        backend: http.backend,
        method: http.template.method,
        prefix: rendered.before,
        suffix: rendered.after,
        match_field: batch.match_field.clone(),
        keep: keep.cloned(),
    };
    Ok((route, rendered.keys_in_path))
}

/// Refuses a key that would change the route (see `route::check_key`).
#[inline(always)]
pub fn check_keys(path: &str, keys: &[Key], keys_in_path: bool) -> Result<(), GqlError> {
    // Integer keys (the usual IDs) are never a dot segment nor empty: nothing to check.
    if keys.iter().all(|k| matches!(k.text, crate::backends::KeyText::Int(_))) {
        return Ok(());
    }
    check_text_keys(path, keys, keys_in_path)
}

fn check_text_keys(path: &str, keys: &[Key], keys_in_path: bool) -> Result<(), GqlError> {
    for key in keys {
        if let crate::backends::KeyText::Text(text) = &key.text {
            route::check_key(text, keys_in_path).map_err(|e| route_error(path, &e))?;
        }
    }
    Ok(())
}

/// A value shortened for an error message.
pub fn preview(value: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_default();
    if s.len() > 60 {
        let mut end = 60;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
