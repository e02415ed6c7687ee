//! Running one subgraph call: the representations of its entity steps' parents written
//! from their answers (deduplicated by their bytes), one GraphQL POST, and each parent's
//! result found by index in the answer's `data` (a root fetch: `data` itself). No JSON tree
//! is built or merged: results are nodes of the answer's tape.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Error as GqlError, ErrorExtensions};
use foldhash::fast::RandomState as Fast;

use super::{Context, Done, Resolved, SubErrors};
use crate::backends::json::tape::{Held, Val, View};
use crate::errors::Code;
use crate::graphql::plan::{Plan, StepKind, SubgraphStep};

/// Where each parent's entity sits: per step, per parent, (alias, index) or `None` when the
/// parent lacks a field of its representation.
type Places = Vec<Vec<Option<(usize, usize)>>>;

/// One alias's representations written so far (`a,b,…`), and each one's index by its bytes.
type Written = (Vec<u8>, HashMap<Box<[u8]>, usize, Fast>);

/// Makes call `id` of `plan` for its steps' parents (`parents[i]`: the `i`th member's).
pub(super) async fn run_call(
    plan: &Plan,
    id: usize,
    parents: Vec<Vec<Held>>,
    ctx: &Context<'_>,
) -> Vec<(usize, Done)> {
    let call = &plan.calls[id];
    let mut body = Vec::with_capacity(call.head.len() + 256);
    body.extend_from_slice(&call.head);
    let mut first = true;
    let mut comma = |body: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            body.push(b',');
        }
    };
    for (name, key) in &call.variables {
        comma(&mut body);
        body.extend_from_slice(key);
        let value = ctx.variables.get(name).unwrap_or(&serde_json::Value::Null);
        serde_json::to_writer(&mut body, value).expect("JSON serializes");
    }
    // Each alias's representations, deduplicated by their bytes.
    let mut reps: Vec<Written> = call.aliases.iter().map(|_| (Vec::new(), HashMap::default())).collect();
    let mut places: Places = Vec::with_capacity(call.members.len());
    let mut scratch = Vec::new();
    let mut root = false;
    for (m, &step) in call.members.iter().enumerate() {
        let StepKind::Subgraph(sub) = &plan.steps[step].kind else { continue };
        let Some(alias) = sub.alias else {
            root = true;
            places.push(Vec::new());
            continue;
        };
        let (list, seen) = &mut reps[alias];
        let mine = parents[m]
            .iter()
            .map(|p| {
                scratch.clear();
                representation(sub, p.val(), &mut scratch)?;
                let n = seen.len();
                let at = *seen.entry(scratch.as_slice().into()).or_insert_with(|| {
                    if n > 0 {
                        list.push(b',');
                    }
                    list.extend_from_slice(&scratch);
                    n
                });
                Some((alias, at))
            })
            .collect();
        places.push(mine);
    }
    let count: usize = reps.iter().map(|(_, seen)| seen.len()).sum();
    if !root && count == 0 {
        // Nothing to fetch: every parent lacked its key.
        return call.members.iter().map(|&s| (s, Vec::new())).collect();
    }
    for (a, (list, _)) in reps.iter().enumerate() {
        comma(&mut body);
        body.extend_from_slice(b"\"r");
        body.extend_from_slice(itoa::Buffer::new().format(a).as_bytes());
        body.extend_from_slice(b"\":[");
        body.extend_from_slice(list);
        body.push(b']');
    }
    body.extend_from_slice(b"}}");
    use tracing::Instrument;
    // A span per call when traces are on (the backend's HTTP span is its child).
    let span = if crate::telemetry::otel::traced() {
        tracing::info_span!(
            "subgraph call",
            facade.subgraph = %call.name,
            facade.steps = call.members.len() as i64,
            facade.representations = count as i64,
        )
    } else {
        tracing::Span::none()
    };
    let answer = ctx
        .batcher
        .subgraph(call.backend, &call.name, body, &call.keep, call.write, count)
        .instrument(span)
        .await;
    let mut out = Vec::with_capacity(call.members.len());
    let answer = match answer {
        Ok(tape) => tape,
        Err(e) => {
            let error = Arc::new(super::fetch_error(&e));
            for (m, &step) in call.members.iter().enumerate() {
                let done =
                    parents[m].iter().map(|p| (p.val().address(), Resolved::Error(error.clone()))).collect();
                out.push((step, done));
            }
            return out;
        }
    };
    let data = answer.root().get(&call.data).filter(|d| d.is_object());
    let mut sorted =
        answer.root().get(&call.errors).map(|e| sort_errors(e, &call.aliases)).unwrap_or_default();
    let Some(data) = data else {
        // No data: every field this call serves fails with the subgraph's first error.
        let message = sorted.first.take().unwrap_or_else(|| "no data in the answer".into());
        let error = Arc::new(subgraph_error(&call.name, &message));
        for (m, &step) in call.members.iter().enumerate() {
            let done =
                parents[m].iter().map(|p| (p.val().address(), Resolved::Error(error.clone()))).collect();
            out.push((step, done));
        }
        return out;
    };
    let lists: Vec<Option<Val<'_>>> =
        call.aliases.iter().map(|a| data.get(a).filter(|l| l.is_list())).collect();
    // Errors of no entity go with the call's first object.
    let mut general = (!sorted.general.0.is_empty()).then(|| Arc::new(std::mem::take(&mut sorted.general)));
    for (m, &step) in call.members.iter().enumerate() {
        let mut done = Vec::with_capacity(parents[m].len());
        for (i, parent) in parents[m].iter().enumerate() {
            let resolved = match places[m].get(i) {
                // A root fetch: its value is `data`.
                None => match general.take() {
                    Some(errors) => Resolved::Partial(Held::of(&answer, data), errors),
                    None => Resolved::Value(Held::of(&answer, data)),
                },
                Some(None) => continue,
                Some(Some((alias, at))) => {
                    let entity = lists[*alias].map(|l| l.item(*at));
                    match entity {
                        Some(e) if !e.is_null() => {
                            let mine = sorted.by_entity.remove(&(*alias, *at));
                            let errors = match (mine, general.take()) {
                                (None, None) => None,
                                (Some(m), None) => Some(Arc::new(m)),
                                (None, Some(g)) => Some(g),
                                (Some(mut m), Some(g)) => {
                                    m.0.extend(g.0.iter().cloned());
                                    Some(Arc::new(m))
                                }
                            };
                            match errors {
                                Some(errors) => Resolved::Partial(Held::of(&answer, e), errors),
                                None => Resolved::Value(Held::of(&answer, e)),
                            }
                        }
                        _ => {
                            let message = sorted
                                .by_entity
                                .get(&(*alias, *at))
                                .and_then(|e| e.0.first())
                                .map_or_else(|| "the subgraph returned no entity".into(), |(m, _)| m.clone());
                            Resolved::Error(Arc::new(subgraph_error(&plan.steps[step].path_name, &message)))
                        }
                    }
                }
            };
            done.push((parent.val().address(), resolved));
        }
        out.push((step, done));
    }
    out
}

/// Writes a parent's representation (`{"__typename":"T","key":…}`); `None` when the parent
/// lacks one of its fields.
fn representation(sub: &SubgraphStep, parent: Val<'_>, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(&sub.typename);
    for (key, written) in &sub.representation {
        let v = parent.get(key).filter(|v| !v.is_null())?;
        out.extend_from_slice(written);
        serde_json::to_writer(&mut *out, &v).ok()?;
    }
    out.push(b'}');
    Some(())
}

/// A subgraph's errors, by the entity their path starts at (`_eK`, index) with the rest of
/// the path, and those of no entity (a root fetch's, with their whole path).
#[derive(Default)]
struct Sorted {
    by_entity: HashMap<(usize, usize), SubErrors>,
    general: SubErrors,
    /// The first error's message, in the answer's order.
    first: Option<String>,
}

fn sort_errors(errors: Val<'_>, aliases: &[Arc<str>]) -> Sorted {
    use async_graphql::PathSegment;
    let mut sorted = Sorted::default();
    let View::List(items) = errors.view() else { return sorted };
    for e in items {
        let message =
            e.get("message").and_then(Val::as_str).unwrap_or("an error without a message").to_owned();
        if sorted.first.is_none() {
            sorted.first = Some(message.clone());
        }
        let mut path: Vec<PathSegment> = Vec::new();
        if let Some(View::List(segments)) = e.get("path").map(Val::view) {
            for seg in segments {
                match (seg.as_str(), seg.as_i64()) {
                    (Some(key), _) => path.push(PathSegment::Field(key.to_owned())),
                    (None, Some(i)) => path.push(PathSegment::Index(usize::try_from(i).unwrap_or(0))),
                    _ => {}
                }
            }
        }
        let entity = match (path.first(), path.get(1)) {
            (Some(PathSegment::Field(a)), Some(PathSegment::Index(i))) => {
                aliases.iter().position(|x| **x == **a).map(|alias| (alias, *i))
            }
            _ => None,
        };
        match entity {
            Some(at) => sorted.by_entity.entry(at).or_default().0.push((message, path.split_off(2))),
            None => sorted.general.0.push((message, path)),
        }
    }
    sorted
}

fn subgraph_error(name: &str, message: &str) -> GqlError {
    GqlError::new(format!("{name}: {message}"))
        .extend_with(|_, ext| ext.set("code", Code::BackendError.as_str()))
}
