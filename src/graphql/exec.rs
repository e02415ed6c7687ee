//! The executor: runs a [`Plan`]'s steps for one request. A step starts as soon as the step
//! holding its parents has finished (siblings run concurrently); it plans one fetch per
//! parent with [`plan_fetch`], groups the keys of all its parents per route, and asks the
//! request's [`Batcher`] once per route (or once per single request), so the futures made
//! are about one per backend call, not one per field. `@js` steps call their function once
//! per step with every parent. Results are kept per step and per parent object (by the
//! address of the parent's node, stable because every answer is held in an `Arc` until the
//! response is written) for [`super::project`] to write.

use std::sync::Arc;

use async_graphql::Error as GqlError;
use async_graphql::ErrorExtensions;
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value};

use super::fetch::{Args, Fetch, batch_keys, batch_route, check_keys, fetch_error, key_limit, plan_fetch};
use super::model::Part;
use super::plan::{ArgValue, Plan, Step, StepKind, TypeCondition};
use crate::backends::json::tape::{Held, Marks, Tape, Val, View};
use crate::backends::{BatchRoute, Batcher, FetchError, Key, SingleRequest};
use crate::errors::Code;

mod subgraph;

/// A step's results, by parent address, in parent (document) order.
type Done = Vec<(usize, Resolved)>;

/// One step's result for one parent.
#[derive(Debug)]
pub enum Resolved {
    /// The field's value (a list field's whole list, or one object or leaf).
    Value(Held),
    /// A batched list field: one item per key (`None`: not returned, where items may be null).
    Items(Vec<Option<Held>>),
    /// The step failed for this parent (the step's `@fallback`, if any, applies). Shared: a
    /// failed batch is one error for every parent it served.
    Error(Arc<GqlError>),
    /// A subgraph's object that came with errors below it (written where the object is).
    Partial(Held, Arc<SubErrors>),
}

/// A subgraph's errors for one object it fetched: each message, and its path below the
/// object (the client's response keys: the documents ask every field under its key).
#[derive(Debug, Default, Clone)]
pub struct SubErrors(pub Vec<(String, Vec<async_graphql::PathSegment>)>);

/// Every step's results, each step's sorted by parent address (found where the last one
/// was, else by binary search: cheaper than hashing every parent into a map).
pub struct Store {
    pub root: Held,
    results: Vec<Done>,
}

impl Store {
    /// The step's result for `parent`, looked for first at `next`, which then follows the
    /// one found: the projection visits a step's parents mostly in the order of their
    /// addresses.
    pub fn get(&self, step: usize, parent: Val<'_>, next: &mut usize) -> Option<&Resolved> {
        let done = &self.results[step];
        let address = parent.address();
        let i = match done.get(*next) {
            Some((at, _)) if *at == address => *next,
            // The parent just read again (several fields read one entity).
            _ if next.checked_sub(1).and_then(|p| done.get(p)).is_some_and(|(at, _)| *at == address) => {
                *next - 1
            }
            _ => done.binary_search_by_key(&address, |(at, _)| *at).ok()?,
        };
        *next = i + 1;
        Some(&done[i].1)
    }

    /// How many steps have results (one hint each for [`Self::get`]).
    pub fn steps(&self) -> usize {
        self.results.len()
    }
}

/// What a request's steps need besides the plan.
pub struct Context<'a> {
    pub batcher: &'a Batcher,
    pub js: Option<&'a super::js::JsFunctions>,
    /// Coerced variables.
    pub variables: &'a Map<String, Value>,
    pub default_list_size: usize,
}

/// Runs every step of `plan` and returns their results.
pub async fn run(plan: &Plan, ctx: &Context<'_>) -> Store {
    let root = {
        let mut t = Tape::default();
        let obj = t.open_obj();
        t.close(obj, 0);
        Held::new(t)
    };
    let mut results: Vec<Done> = plan.steps.iter().map(|_| Vec::new()).collect();
    // Each subgraph call waits for the parents of every step it serves.
    let mut calls: Vec<Waiting> = plan
        .calls
        .iter()
        .map(|c| Waiting { left: c.members.len(), parents: c.members.iter().map(|_| Vec::new()).collect() })
        .collect();
    let mut ready = Vec::new();
    // A query starts every root step at once; a mutation one root step at a time, each
    // finished with everything below it before the next starts.
    let waves: Vec<&[usize]> =
        if plan.serial { plan.roots.chunks(1).collect() } else { vec![plan.roots.as_slice()] };
    for wave in waves {
        let mut running = FuturesUnordered::new();
        for &s in wave {
            arrive(plan, s, vec![root.clone()], &mut calls, &mut ready);
        }
        running.extend(ready.drain(..).map(|w| work(plan, w, ctx)));
        while let Some(finished) = running.next().await {
            for (id, mut done) in finished {
                let step = &plan.steps[id];
                for &child in &step.children {
                    let parents = parents_of(&plan.steps[child], step, &done);
                    arrive(plan, child, parents, &mut calls, &mut ready);
                }
                // Parents are distinct objects (`parents_of` deduplicates them): one result each.
                done.sort_unstable_by_key(|(at, _)| *at);
                results[id] = done;
            }
            running.extend(ready.drain(..).map(|w| work(plan, w, ctx)));
        }
    }
    Store { root, results }
}

/// A subgraph call's steps still waiting for their parents, and the parents found so far.
struct Waiting {
    left: usize,
    parents: Vec<Vec<Held>>,
}

/// Work ready to start: a step for its parents, or a subgraph call for its steps' parents.
enum Work {
    Step(usize, Vec<Held>),
    Call(usize, Vec<Vec<Held>>),
}

/// One future type for both kinds of work (no box per step).
async fn work(plan: &Plan, work: Work, ctx: &Context<'_>) -> smallvec::SmallVec<[(usize, Done); 1]> {
    match work {
        Work::Step(id, parents) => smallvec::smallvec![run_step(&plan.steps[id], id, parents, ctx).await],
        // Boxed: a call's future is larger than a step's, and every step's future would be
        // as large as the largest kind (one allocation per call instead).
        Work::Call(call, parents) => Box::pin(subgraph::run_call(plan, call, parents, ctx)).await.into(),
    }
}

/// `step`'s parents are known (none: it runs for nobody, nor does anything below it). A
/// subgraph step's call starts once all its steps' parents are known.
fn arrive(plan: &Plan, step: usize, parents: Vec<Held>, calls: &mut [Waiting], ready: &mut Vec<Work>) {
    let s = &plan.steps[step];
    if let StepKind::Subgraph(sub) = &s.kind {
        let call = &plan.calls[sub.call];
        let waiting = &mut calls[sub.call];
        if let Some(at) = call.members.iter().position(|m| *m == step) {
            waiting.parents[at] = parents;
        }
        waiting.left -= 1;
        if waiting.left == 0 {
            let parents = std::mem::take(&mut waiting.parents);
            ready.push(Work::Call(sub.call, parents));
        }
        return;
    }
    if !parents.is_empty() {
        ready.push(Work::Step(step, parents));
        return;
    }
    // Nothing runs below: the calls waiting for steps below learn they have no parents.
    if plan.calls.is_empty() {
        return;
    }
    for &child in &s.children {
        arrive(plan, child, Vec::new(), calls, ready);
    }
}

/// The objects `child` runs for, found in its producer's results (deduplicated by address).
fn parents_of(child: &Step, producer: &Step, done: &Done) -> Vec<Held> {
    let depth = producer.out.list_depth();
    // Room for one parent per item of the producer's lists (the usual shape), so the vector
    // and the set do not grow step by step.
    let items: usize = done
        .iter()
        .map(|(_, r)| match r {
            Resolved::Value(v) | Resolved::Partial(v, _) if depth > 0 => v.val().len(),
            Resolved::Items(items) => items.len(),
            _ => 1,
        })
        .sum();
    let mut out = Vec::with_capacity(items);
    let mut seen = Marks::default();
    let route: Route<'_> = (&child.via, 0, &child.guards);
    for (_, resolved) in done {
        match resolved {
            Resolved::Value(v) | Resolved::Partial(v, _) => {
                walk(v, v.val(), depth, route, &mut seen, &mut out)
            }
            Resolved::Items(items) => {
                for v in items.iter().flatten() {
                    walk(v, v.val(), depth.saturating_sub(1), route, &mut seen, &mut out);
                }
            }
            Resolved::Error(_) => {
                if let Some(fallback) = &producer.fallback {
                    let held = Held::whole(fallback.clone());
                    walk(&held, held.val(), depth, route, &mut seen, &mut out);
                }
            }
        }
    }
    out
}

/// The hops still to take, how many were taken, and the type checks on the way.
type Route<'p> = (&'p [(Arc<str>, usize)], usize, &'p [TypeCondition]);

/// Collects the objects at `at` (a value of `owner`'s answer), through `depth` list levels
/// and then the `via` hops, keeping those that pass the guards. Bounded by the type's list
/// depths and the plan's hops, not by the data.
fn walk(owner: &Held, at: Val<'_>, depth: usize, route: Route<'_>, seen: &mut Marks, out: &mut Vec<Held>) {
    let (via, taken, guards) = route;
    match at.view() {
        View::List(items) if depth > 0 => {
            for item in items {
                walk(owner, item, depth - 1, route, seen, out);
            }
        }
        View::Obj(_)
            if guards
                .iter()
                .filter(|g| g.hop == taken)
                .any(|g| at.get(&g.field).and_then(Val::as_str) != Some(&*g.type_name)) => {}
        View::Obj(_) => match via.split_first() {
            None => {
                if seen.mark(at) {
                    out.push(owner.at(at));
                }
            }
            Some(((name, list_depth), rest)) => {
                if let Some(next) = at.get(name).filter(|v| !v.is_null()) {
                    walk(owner, next, *list_depth, (rest, taken + 1, guards), seen, out);
                }
            }
        },
        _ => {}
    }
}

/// The step's arguments for this request, as the resolver of the old executor got them.
fn arguments(step: &Step, variables: &Map<String, Value>) -> Args {
    step.args
        .iter()
        .map(|(name, value)| {
            let json = match value {
                ArgValue::Const(v) => v.clone(),
                ArgValue::Dynamic(v) => v
                    .clone()
                    .into_const_with(|var| {
                        let v = variables.get(var.as_str()).cloned().unwrap_or(Value::Null);
                        async_graphql::Value::from_json(v).map_err(|_| ())
                    })
                    .ok()
                    .and_then(|c| c.into_json().ok())
                    .unwrap_or(Value::Null),
            };
            (name.clone(), json)
        })
        .collect()
}

/// Runs one step for its parents: (step, results by parent address).
async fn run_step(step: &Step, id: usize, parents: Vec<Held>, ctx: &Context<'_>) -> (usize, Done) {
    use tracing::Instrument;
    // A span per step when traces are on; nothing at all when they are off.
    let span = if crate::telemetry::otel::traced() {
        tracing::info_span!(
            "fetch step",
            facade.step = id as i64,
            facade.field = %step.path_name,
            facade.kind = match step.kind {
                StepKind::Http(_) => "http",
                StepKind::Js(_) => "js",
                StepKind::Subgraph(_) => "subgraph",
            },
            facade.parents = parents.len() as i64,
        )
    } else {
        tracing::Span::none()
    };
    let args = arguments(step, ctx.variables);
    let results = async {
        match &step.kind {
            StepKind::Http(http) => http_step(step, http, &args, &parents, ctx).await,
            StepKind::Js(function) => js_step(step, function, &args, &parents, ctx).await,
            // Run by their calls (`subgraph.rs`), never alone.
            StepKind::Subgraph(_) => Vec::new(),
        }
    }
    .instrument(span)
    .await;
    (id, results)
}

async fn http_step(
    step: &Step,
    http: &crate::graphql::model::HttpBinding,
    args: &Args,
    parents: &[Held],
    ctx: &Context<'_>,
) -> Done {
    // By parent index, so results (and the parents of the next steps) keep document order.
    let mut out: Vec<Option<Resolved>> = parents.iter().map(|_| None).collect();
    let mut singles: Vec<(usize, SingleRequest)> = Vec::new();
    let mut groups: Vec<(BatchRoute, Vec<Key>)> = Vec::new();
    // (parent address, group, first key, key count)
    let mut spans: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(parents.len());
    // A batched route without `{$parent…}` is rendered once for the step, not per parent.
    let fixed =
        http.batch.as_ref().filter(|_| !http.template.parts.iter().any(|p| matches!(p, Part::Parent(_))));
    let mut route: Option<Result<(BatchRoute, bool), GqlError>> = None;
    // The fixed route's keys, every parent's appended in turn (group 0 once the loop is done).
    let mut fixed_keys: Vec<Key> = Vec::new();
    // The fixed route's key limit (an argument's value): read once for the step.
    let mut limit = None;
    for (at, parent) in parents.iter().enumerate() {
        let value = parent.val();
        if let Some(batch) = fixed {
            let start = fixed_keys.len();
            let limit =
                limit.get_or_insert_with(|| key_limit(&step.path_name, http, args, ctx.default_list_size));
            let pushed = batch_keys(&step.path_name, batch, limit, value, &mut fixed_keys);
            let n = match pushed {
                Ok(Some(n)) => {
                    if start == 0 {
                        // Room for as many keys from each parent still to come.
                        fixed_keys.reserve(n * (parents.len() - at - 1));
                    }
                    n
                }
                Ok(None) => continue,
                Err(e) => {
                    out[at] = Some(Resolved::Error(Arc::new(e)));
                    continue;
                }
            };
            let checked = match route.get_or_insert_with(|| {
                batch_route(&step.path_name, http, batch, args, value, step.keep.as_ref())
            }) {
                Ok((_, in_path)) => check_keys(&step.path_name, &fixed_keys[start..], *in_path),
                Err(e) => Err(e.clone()),
            };
            if let Err(e) = checked {
                fixed_keys.truncate(start);
                out[at] = Some(Resolved::Error(Arc::new(e)));
                continue;
            }
            spans.push((at, 0, start, n));
            continue;
        }
        match plan_fetch(&step.path_name, http, args, value, ctx.default_list_size, step.keep.as_ref()) {
            Ok(Fetch::Nothing) => {}
            Ok(Fetch::Single(request)) => singles.push((at, request)),
            Ok(Fetch::Batch(route, keys)) => {
                let g = match groups.iter().position(|(r, _)| *r == route) {
                    Some(g) => g,
                    None => {
                        groups.push((route, Vec::new()));
                        groups.len() - 1
                    }
                };
                let start = groups[g].1.len();
                spans.push((at, g, start, keys.len()));
                groups[g].1.extend(keys);
            }
            Err(e) => {
                out[at] = Some(Resolved::Error(Arc::new(e)));
            }
        }
    }
    if !spans.is_empty()
        && fixed.is_some()
        && let Some(Ok((r, _))) = &route
    {
        groups.push((r.clone(), fixed_keys));
    }
    let single_calls = join_all(singles.iter().map(|(_, r)| async {
        if step.write {
            ctx.batcher.call_write(r.clone()).await
        } else {
            ctx.batcher.load_one(r.clone()).await
        }
    }));
    let batch_calls = join_all(groups.into_iter().map(|(route, keys)| ctx.batcher.load_many(route, keys)));
    let (single_results, batch_results) = futures_util::join!(single_calls, batch_calls);
    let mut errors = SharedErrors::default();
    let select = |v: Held| match &http.select {
        Some(key) => v.at(v.val().field(key)),
        None => v,
    };
    for ((at, _), result) in singles.iter().zip(single_results) {
        let resolved = match result {
            Ok(v) => Resolved::Value(select(v)),
            Err(e) => Resolved::Error(errors.of(&e)),
        };
        out[*at] = Some(resolved);
    }
    let keys_are_list = http.batch.as_ref().is_some_and(|b| b.keys_are_list);
    let item_nullable = step.out.nullable.get(1).copied().unwrap_or(true);
    for (at, g, start, len) in spans {
        let loaded = &batch_results[g];
        let resolved = if keys_are_list {
            let mut items = Vec::with_capacity(len);
            let mut failed = None;
            for k in start..start + len {
                match loaded.get(k) {
                    Ok(Some(v)) => items.push(Some(select(v.clone()))),
                    // A key the backend did not return: null where items may be null, else left out.
                    Ok(None) if item_nullable => items.push(None),
                    Ok(None) => {}
                    Err(e) => {
                        failed = Some(errors.of(e));
                        break;
                    }
                }
            }
            match failed {
                Some(e) => Resolved::Error(e),
                None => Resolved::Items(items),
            }
        } else {
            match (start..start + len).next_back().map(|k| loaded.get(k)) {
                Some(Ok(Some(v))) => Resolved::Value(select(v.clone())),
                Some(Err(e)) => Resolved::Error(errors.of(e)),
                _ => continue,
            }
        };
        out[at] = Some(resolved);
    }
    let mut done = Vec::with_capacity(parents.len());
    done.extend(parents.iter().zip(out).filter_map(|(p, r)| Some((p.val().address(), r?))));
    done
}

/// The GraphQL errors of a step's failed fetches, each made once: the keys of a failed chunk
/// all carry its one error, and making the error's message and extensions for every one of
/// them cost more than the rest of the request.
#[derive(Default)]
struct SharedErrors {
    last: Option<(FetchError, Arc<GqlError>)>,
}

impl SharedErrors {
    fn of(&mut self, e: &FetchError) -> Arc<GqlError> {
        match &self.last {
            Some((seen, made)) if seen == e => made.clone(),
            _ => {
                let made = Arc::new(fetch_error(e));
                self.last = Some((e.clone(), made.clone()));
                made
            }
        }
    }
}

async fn js_step(step: &Step, function: &Arc<str>, args: &Args, parents: &[Held], ctx: &Context<'_>) -> Done {
    let args = Value::Object(args.clone()).to_string();
    let items: Vec<(String, String)> = parents.iter().map(|p| (p.val().to_string(), args.clone())).collect();
    let result = match (ctx.js, ctx.js.and_then(|js| js.get(function))) {
        (Some(js), Some(script)) => js.pool.each(script, function, items).await,
        _ => Err(crate::scripts::ScriptError::Contract {
            script: "resolvers-js".into(),
            message: format!("no function {function}"),
        }),
    };
    // A failed call fails every parent with one shared error.
    let result = result.map_err(|e| {
        Arc::new(
            GqlError::new(format!("{}: {e}", step.path_name))
                .extend_with(|_, ext| ext.set("code", Code::ScriptError.as_str())),
        )
    });
    parents
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let resolved = match &result {
                Ok(outs) => Resolved::Value(
                    outs.get(i)
                        .and_then(|o| {
                            crate::backends::json::parse(o.as_bytes(), &crate::backends::json::Keep::All).ok()
                        })
                        .map_or_else(Held::null, Held::new),
                ),
                Err(e) => Resolved::Error(e.clone()),
            };
            (p.val().address(), resolved)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::policy::Resilience;
    use crate::backends::{BackendSettings, Backends};
    use crate::demo::{DemoBackends, DemoOptions};
    use crate::graphql::{plan, sdl};

    /// Two backends of the demo, one field read from each: a title by ID, and its rating
    /// through a batch route.
    const SDL: &str = r#"
extend schema
  @backend(name: "catalog", url: "http://127.0.0.1:1")
  @backend(name: "ratings", url: "http://127.0.0.1:1")
type Query {
  title(id: ID!): Title @http(backend: "catalog", get: "/titles/{$args.id}")
}
type Title {
  id: ID!
  name: String!
  rating: Rating @http(backend: "ratings", batch: "POST /ratings/batch", keys: "$parent.id", match: "titleId")
}
type Rating {
  titleId: ID!
  average: Float
}
"#;

    /// Runs `text` with the executor alone (no engine, no projection) against the demo
    /// backends; returns the steps' results and each backend's calls.
    async fn run_alone(text: &str) -> (Arc<plan::Plan>, Store, Vec<(&'static str, u64)>) {
        let demo = DemoBackends::start(&DemoOptions::default()).await.unwrap();
        let settings = demo
            .urls()
            .filter(|(name, _)| ["catalog", "ratings"].contains(name))
            .map(|(name, url)| BackendSettings {
                name: name.to_owned(),
                url,
                resilience: Resilience::default(),
            })
            .collect();
        let backends = Arc::new(Backends::new(settings).unwrap());
        let model = sdl::analyze(&[sdl::SchemaFile { name: "t.graphql".into(), text: SDL.into() }]).unwrap();
        let document = Arc::new(async_graphql::parser::parse_query(text).unwrap());
        let op = plan::Operation::new(document, None, Arc::new(model)).unwrap();
        let variables = Map::new();
        let plan = op.plan(&variables).unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let batcher = Batcher::new(backends, deadline);
        let ctx = Context { batcher: &batcher, js: None, variables: &variables, default_list_size: 10 };
        let store = run(&plan, &ctx).await;
        let calls = demo.info().into_iter().map(|b| (b.name, b.requests)).collect();
        (plan, store, calls)
    }

    fn calls_to(calls: &[(&'static str, u64)], backend: &str) -> u64 {
        calls.iter().find(|(name, _)| *name == backend).map_or(0, |(_, n)| *n)
    }

    #[tokio::test]
    async fn one_batched_call_serves_every_parent_of_a_step_and_each_parent_gets_its_own() {
        let text =
            "{ a: title(id: 1) { name rating { average } } b: title(id: 2) { name rating { average } } }";
        let (plan, store, calls) = run_alone(text).await;
        // Two root steps (one per title) and one rating step under each.
        assert_eq!((plan.steps.len(), store.steps()), (4, 4));
        assert_eq!(calls_to(&calls, "catalog"), 2, "one GET per title: {calls:?}");
        assert_eq!(calls_to(&calls, "ratings"), 1, "both ratings in one batch: {calls:?}");
        // Each title's step holds one value, for the root; each rating step one for its title.
        for i in 0..plan.steps.len() {
            let done = &store.results[i];
            assert_eq!(done.len(), 1, "step {i} ran for one parent");
            assert!(matches!(done[0].1, Resolved::Value(_)), "step {i} answered");
        }
    }

    #[tokio::test]
    async fn a_missing_parent_runs_nothing_below_it() {
        // Title 99999 does not exist: its rating step has no parent and calls nobody.
        let (_plan, store, calls) = run_alone("{ title(id: 99999) { name rating { average } } }").await;
        assert_eq!(calls_to(&calls, "catalog"), 1);
        assert_eq!(calls_to(&calls, "ratings"), 0, "{calls:?}");
        assert!(store.results[1].is_empty(), "the rating step ran for no parent");
    }
}
