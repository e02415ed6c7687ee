//! Per-request coalescing of backend fetches.
//!
//! Every key asked of one batched route while the request's task runs one poll pass (one
//! "tick": all sibling and cousin resolvers that are ready at once) goes out in one call per
//! `max_batch_size` keys, and a key or single request already asked for in this request is
//! answered from the first fetch.
//!
//! Why not async-graphql's DataLoader: it collects keys for a fixed timer delay (1–2 ms per
//! nesting level even when idle) and, on a multi-threaded runtime, its timer task can fire
//! on another worker while this request's task is still polling siblings, splitting a level
//! into several calls. Here the first resolver to ask for a route becomes the group's leader,
//! yields once to the scheduler, and dispatches when it is polled again, which happens only
//! after every resolver polled in the same pass has added its keys. No timer, no added
//! latency, and a batch per (level, route) that tests can count on.

use std::collections::HashMap;

use foldhash::fast::RandomState as Fast;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, join_all};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::json::tape::{Held, Items, Tape, Val, View};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::backend::{Backend, Backends};
use super::error::FetchError;
use super::share::{Call, CallKey};
use super::transport::Method;

/// Characters left as they are in a key placed in a URL.
const KEY_CHARS: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A batched route with its arguments filled in: everything but the keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchRoute {
    pub backend: usize,
    pub method: Method,
    /// The path up to `{$keys}` (all of it when the keys travel in a POST body).
    pub prefix: String,
    /// The path after `{$keys}`; `None` when the keys travel in a POST body.
    pub suffix: Option<String>,
    pub match_field: Option<Arc<str>>,
    /// The fields of the answer to keep (`None`: all of it).
    pub keep: Option<super::json::keep::KeepRef>,
}

/// One key: its text (how it is matched and cached) and whether it was a JSON string (how it
/// is sent in a POST body: `"7"` stays a string, `7` a number).
#[derive(Debug, Clone)]
pub struct Key {
    pub text: KeyText,
    pub string: bool,
}

impl Key {
    /// A key from a scalar (`None` for null, a list or an object).
    #[inline]
    pub fn of(value: Val<'_>) -> Option<Self> {
        // The usual key, an integer ID, without a view.
        if let Some(i) = value.int() {
            return Some(Self { text: KeyText::Int(i), string: false });
        }
        Some(Self { text: KeyText::of(value)?, string: matches!(value.view(), View::Str(_)) })
    }

    /// Writes the key as the backend sent it: a string, or the number or boolean its text is.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match (&self.text, self.string) {
            (KeyText::Int(i), false) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            (KeyText::Int(i), true) => {
                out.push(b'"');
                out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
                out.push(b'"');
            }
            (KeyText::Text(t), true) => serde_json::to_writer(out, &**t).expect("a string serializes"),
            // A number past i64, a float or a boolean: its text is its JSON.
            (KeyText::Text(t), false) => match serde_json::from_str::<Value>(t) {
                Ok(v) => serde_json::to_writer(out, &v).expect("JSON serializes"),
                Err(_) => serde_json::to_writer(out, &**t).expect("a string serializes"),
            },
        }
    }
}

/// A fetch that is not batched, identified by everything that makes it distinct.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SingleRequest {
    pub backend: usize,
    pub method: Method,
    pub path: String,
    /// Serialized JSON body, if any.
    pub body: Option<String>,
    /// The fields of the answer to keep (`None`: all of it).
    pub keep: Option<super::json::keep::KeepRef>,
}

/// One backend call a request made, for `x-facade-debug` (one request's waterfall).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchRecord {
    pub backend: String,
    pub method: &'static str,
    /// The path called (long ones shortened as in logs).
    pub route: String,
    /// Keys in the call (0 for a single request).
    pub keys: usize,
    /// Since the request started, in milliseconds.
    pub start_ms: f64,
    pub duration_ms: f64,
    /// `ok`, or the error's `extensions.code`.
    pub outcome: &'static str,
    /// The backend's HTTP status, when it answered (a call refused before it, or timed out,
    /// has none).
    pub status: Option<u16>,
}

/// The calls of one request, when someone asked to see them. Bounded by the request's own
/// fetches (each call is recorded once).
#[derive(Debug, Clone)]
pub struct FetchLog {
    origin: Instant,
    /// A std mutex: one push per backend call, never held across an `.await`.
    records: Arc<Mutex<Vec<FetchRecord>>>,
}

impl Default for FetchLog {
    fn default() -> Self {
        Self { origin: Instant::now(), records: Arc::default() }
    }
}

impl FetchLog {
    /// The calls so far, by start time.
    pub fn records(&self) -> Vec<FetchRecord> {
        let mut out = self.records.lock().unwrap_or_else(PoisonError::into_inner).clone();
        out.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        out
    }

    /// Times `call` and records it.
    async fn record<T>(
        log: Option<&FetchLog>,
        backend: &Backend,
        method: Method,
        path: &str,
        keys: usize,
        call: impl std::future::Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        let Some(log) = log else { return call.await };
        let started = Instant::now();
        let result = call.await;
        let record = FetchRecord {
            backend: backend.name().to_owned(),
            method: method.as_str(),
            route: super::transport::shown(path),
            keys,
            start_ms: (started - log.origin).as_secs_f64() * 1e3,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            outcome: result.as_ref().map_or_else(|e| e.code().as_str(), |_| "ok"),
            status: match &result {
                // Only a 2xx answer is a success.
                Ok(_) | Err(FetchError::Body { .. }) => Some(200),
                Err(FetchError::Status { status, .. }) => Some(*status),
                Err(_) => None,
            },
        };
        log.records.lock().unwrap_or_else(PoisonError::into_inner).push(record);
        result
    }
}

/// A key's group (its index in `State::groups`) and its place among that group's keys.
type Place = (usize, usize);

type BatchSlot = Shared<BoxFuture<'static, Arc<BatchOutcome>>>;
type SingleSlot = Shared<BoxFuture<'static, Result<Held, FetchError>>>;

struct Pending {
    keys: Vec<Key>,
    tx: oneshot::Sender<Arc<BatchOutcome>>,
    /// Its index in [`State::groups`].
    group: usize,
}

#[derive(Default)]
struct State {
    /// Keys waiting for their group's leader to dispatch.
    pending: HashMap<Arc<BatchRoute>, Pending, Fast>,
    /// Every batch group of this request (pending or dispatched), by index.
    groups: Vec<BatchSlot>,
    /// Every key asked for in this request, by route: the index of its group and its place
    /// in the group's keys. (Indexes, not a clone of the group's future per key: each clone
    /// costs a waker slot and a lock.)
    asked: HashMap<Arc<BatchRoute>, Asked, Fast>,
    singles: HashMap<SingleRequest, SingleSlot, Fast>,
}

/// A route's keys asked so far, integers apart from texts: the usual numeric IDs hash as one
/// word, and their map is freed without visiting each entry (nothing in it to drop).
#[derive(Default)]
struct Asked {
    ints: HashMap<i64, Place, Fast>,
    texts: HashMap<Arc<str>, Place, Fast>,
}

/// Where a key not asked before goes, once its place is known.
enum Vacancy<'m> {
    Int(std::collections::hash_map::VacantEntry<'m, i64, Place>),
    Text(std::collections::hash_map::VacantEntry<'m, Arc<str>, Place>),
}

impl Vacancy<'_> {
    fn insert(self, place: Place) {
        match self {
            Vacancy::Int(e) => {
                e.insert(place);
            }
            Vacancy::Text(e) => {
                e.insert(place);
            }
        }
    }
}

/// One per GraphQL request; dropped with it.
pub struct Batcher {
    backends: Arc<Backends>,
    /// The request's deadline: no backend attempt runs past it.
    deadline: Instant,
    /// A std mutex: it guards map updates only and is never held across an `.await`.
    state: Mutex<State>,
    /// Set when the request's calls are to be shown (`x-facade-debug`).
    log: Option<FetchLog>,
}

/// The leader's hold on its group: [`Dispatch::run`] makes the group's calls after the
/// leader's yield; dropped before that (the leader's resolver cancelled), it hands the group
/// to a task of its own, so the other waiters are never stranded.
struct Dispatch<'a> {
    batcher: &'a Batcher,
    /// `None` once [`Dispatch::run`] took the group: a later group of the same route, opened
    /// while this one's calls run, is its own leader's to dispatch.
    route: Option<Arc<BatchRoute>>,
}

impl Drop for Dispatch<'_> {
    fn drop(&mut self) {
        if let Some(route) = self.route.take() {
            self.batcher.dispatch(&route);
        }
    }
}

impl Dispatch<'_> {
    /// Makes the group's calls on the leader's own task (the request's: no task spawned, no
    /// hop between threads to hand the answer back) and hands the outcome to every waiter.
    /// Were the leader dropped during the calls, the waiters would get `Cancelled`: steps
    /// are dropped only with their whole request.
    async fn run(mut self) {
        let Some(route) = self.route.take() else { return };
        let b = self.batcher;
        let taken = b.state().pending.remove(&route);
        let Some(group) = taken else { return };
        let outcome = fetch_batch(&b.backends, &route, group.keys, b.deadline, b.log.as_ref()).await;
        let _ = group.tx.send(Arc::new(outcome));
    }
}

impl Batcher {
    pub fn new(backends: Arc<Backends>, deadline: Instant) -> Self {
        Self { backends, deadline, state: Mutex::new(State::default()), log: None }
    }

    /// A batcher that records every call it makes in `log`.
    pub fn with_log(mut self, log: Option<FetchLog>) -> Self {
        self.log = log;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches `keys` from `route` together with every other key asked of it in this tick.
    /// Per key: the matched item, `None` when the backend did not return it, or the error of
    /// the call that carried it.
    pub async fn load_many(&self, route: BatchRoute, keys: Vec<Key>) -> Loaded {
        let (asked, lead) = self.register(Arc::new(route), keys);
        if let Some(dispatch) = lead {
            tokio::task::yield_now().await;
            dispatch.run().await;
        }
        // Usually every key is in one or two groups: wait for each group once, not per key.
        let mut unique: Vec<usize> = Vec::new();
        let places: Vec<Place> = asked
            .iter()
            .map(|&(group, place)| match unique.iter().position(|u| *u == group) {
                Some(i) => (i, place),
                None => {
                    unique.push(group);
                    (unique.len() - 1, place)
                }
            })
            .collect();
        let slots: Vec<BatchSlot> = {
            let state = self.state();
            unique.iter().map(|g| state.groups[*g].clone()).collect()
        };
        Loaded { outcomes: join_all(slots).await, places }
    }

    /// Adds keys to the route's pending group (or finds them already asked for). Returns each
    /// key's group and place in it and, if this call opened the group, the guard that
    /// dispatches it.
    fn register(&self, route: Arc<BatchRoute>, keys: Vec<Key>) -> (Vec<Place>, Option<Dispatch<'_>>) {
        let mut lead = false;
        let mut guard = self.state();
        let State { pending, asked, groups, .. } = &mut *guard;
        let asked = asked.entry(route.clone()).or_default();
        if matches!(keys.first(), Some(Key { text: KeyText::Int(_), .. })) {
            asked.ints.reserve(keys.len());
        }
        let mut slots = Vec::with_capacity(keys.len());
        // The route's pending group, found (or opened) once, at the first new key.
        let mut group: Option<&mut Pending> = None;
        let total = keys.len();
        for (n, key) in keys.into_iter().enumerate() {
            let e = match &key.text {
                KeyText::Int(i) => match asked.ints.entry(*i) {
                    Entry::Occupied(e) => {
                        slots.push(*e.get());
                        continue;
                    }
                    Entry::Vacant(e) => Vacancy::Int(e),
                },
                KeyText::Text(t) => match asked.texts.entry(t.clone()) {
                    Entry::Occupied(e) => {
                        slots.push(*e.get());
                        continue;
                    }
                    Entry::Vacant(e) => Vacancy::Text(e),
                },
            };
            if group.is_none() {
                group = Some(match pending.entry(route.clone()) {
                    Entry::Occupied(p) => p.into_mut(),
                    Entry::Vacant(p) => {
                        lead = true;
                        let (tx, rx) = oneshot::channel::<Arc<BatchOutcome>>();
                        let backend: Arc<str> = Arc::from(self.backends.get(route.backend).name());
                        let slot = rx
                            .map(move |r| {
                                r.unwrap_or_else(|_| {
                                    Arc::new(BatchOutcome {
                                        all_failed: Some(FetchError::Cancelled { backend }),
                                        ..Default::default()
                                    })
                                })
                            })
                            .boxed()
                            .shared();
                        groups.push(slot);
                        p.insert(Pending { keys: Vec::new(), tx, group: groups.len() - 1 })
                    }
                });
            }
            let Some(g) = group.as_deref_mut() else { unreachable!("set above") };
            if g.keys.capacity() == g.keys.len() {
                // Room for the rest of this call's keys at once, not doubling step by step.
                g.keys.reserve(total - n);
            }
            let at = (g.group, g.keys.len());
            e.insert(at);
            slots.push(at);
            g.keys.push(key);
        }
        drop(guard);
        // `then`, not `then_some`: building a guard we do not return would dispatch on drop.
        (slots, lead.then(|| Dispatch { batcher: self, route: Some(route) }))
    }

    /// Makes the route's pending group's calls on a task of its own (the fallback for a
    /// leader dropped before it ran them).
    fn dispatch(&self, route: &Arc<BatchRoute>) {
        let Some(group) = self.state().pending.remove(route) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let backends = self.backends.clone();
        let route = route.clone();
        let deadline = self.deadline;
        let log = self.log.clone();
        runtime.spawn(crate::telemetry::otel::carry(
            async move {
                let outcome = fetch_batch(&backends, &route, group.keys, deadline, log.as_ref()).await;
                let _ = group.tx.send(Arc::new(outcome));
            }
            .in_current_span(),
        ));
    }

    /// Fetches one request, once per GraphQL request however often it is asked for.
    pub async fn load_one(&self, request: SingleRequest) -> Result<Held, FetchError> {
        self.single_slot(request).await
    }

    /// Posts a GraphQL document (`body`: query and variables) to a subgraph: a query's call
    /// may be retried and shared with an identical one in flight; a mutation's (`write`) is
    /// made exactly once. `items`: the representations it carries (for the log and metrics);
    /// `label`: what the waterfall shows for it (the subgraph's URL is its path).
    pub async fn subgraph(
        &self,
        backend: usize,
        label: &str,
        body: Vec<u8>,
        keep: &super::json::keep::KeepRef,
        write: bool,
        items: usize,
    ) -> Result<Arc<Tape>, FetchError> {
        let b = self.backends.get(backend);
        let body = bytes::Bytes::from(body);
        let made = async {
            if write {
                b.call(Method::Post, "", Some(&body), self.deadline, false, Some(&keep.0), items)
                    .await
                    .map(Arc::new)
            } else {
                let call = Call {
                    method: Method::Post,
                    path: String::new(),
                    body: Some(body),
                    keep: Some(keep.clone()),
                };
                b.read(&CallKey::new(call), self.deadline, items).await
            }
        };
        FetchLog::record(self.log.as_ref(), b, Method::Post, label, items, made).await
    }

    /// Makes a call that changes something (a mutation's field): never shared with an
    /// identical call of the same request, never retried.
    pub async fn call_write(&self, request: SingleRequest) -> Result<Held, FetchError> {
        self.start_single(request, false).await
    }

    /// The request's fetch, started now if it was not asked for before in this request.
    fn single_slot(&self, request: SingleRequest) -> SingleSlot {
        let mut state = self.state();
        if let Some(slot) = state.singles.get(&request) {
            return slot.clone();
        }
        // Only GETs are reads: a single POST may change something and is never retried.
        let read = request.method == Method::Get;
        let slot = self.start_single(request.clone(), read);
        state.singles.insert(request, slot.clone());
        slot
    }

    /// One call, made by the request's task when it first waits for it (the calls of a
    /// request run concurrently within its task, as its steps do).
    fn start_single(&self, req: SingleRequest, read: bool) -> SingleSlot {
        let backends = self.backends.clone();
        let deadline = self.deadline;
        let log = self.log.clone();
        async move {
            // The JSON text made when the request was planned.
            let body = req.body.as_ref().map(|text| bytes::Bytes::from(text.clone()));
            let backend = backends.get(req.backend);
            let call = async {
                if read {
                    let call =
                        Call { method: req.method, path: req.path.clone(), body, keep: req.keep.clone() };
                    backend.read(&CallKey::new(call), deadline, 0).await
                } else {
                    let keep = req.keep.as_ref().map(|k| &*k.0);
                    backend
                        .call(req.method, &req.path, body.as_ref(), deadline, false, keep, 0)
                        .await
                        .map(Arc::new)
                }
            };
            match FetchLog::record(log.as_ref(), backend, req.method, &req.path, 0, call).await {
                Ok(v) => Ok(Held::whole(v)),
                // A single resource that does not exist is a null field, not an error.
                Err(FetchError::Status { status: 404, .. }) => Ok(Held::null()),
                Err(e) => Err(e),
            }
        }
        .boxed()
        .shared()
    }
}

/// What [`Batcher::load_many`] got: per key asked, in order, its item, `None` when the
/// backend did not return it, or the error of the call that carried it. Read in place: the
/// items stay in their groups' outcomes.
pub struct Loaded {
    outcomes: Vec<Arc<BatchOutcome>>,
    /// Per key: its group's index in `outcomes`, and its place in that group.
    places: Vec<Place>,
}

impl Loaded {
    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// The `i`th key's item, `None` if not returned, or its error.
    pub fn get(&self, i: usize) -> Result<Option<&Held>, &FetchError> {
        let (group, place) = self.places[i];
        self.outcomes[group].get(place)
    }

    /// Every key's result, owned.
    pub fn results(&self) -> Vec<Result<Option<Held>, FetchError>> {
        (0..self.len()).map(|i| self.get(i).map(|v| v.cloned()).map_err(FetchError::clone)).collect()
    }
}

impl BatchOutcome {
    /// The key at `place` in the group: its item, `None` if not returned, or its error.
    fn get(&self, place: usize) -> Result<Option<&Held>, &FetchError> {
        match self.slots.get(place) {
            Some(Slot::Found(v)) => Ok(Some(v)),
            Some(Slot::Missing) => Ok(None),
            Some(Slot::Failed(e)) => Err(&self.errors[*e]),
            None => self.all_failed.as_ref().map_or(Ok(None), Err),
        }
    }
}

impl BatchRoute {
    /// The path and body (JSON text) of one call for `keys`.
    fn render(&self, keys: &[Key]) -> (String, Option<bytes::Bytes>) {
        match &self.suffix {
            Some(suffix) => {
                // Room for the usual keys (numbers of up to seven digits), grown past that.
                let mut path = String::with_capacity(self.prefix.len() + 8 * keys.len() + suffix.len());
                path.push_str(&self.prefix);
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        path.push(',');
                    }
                    match &key.text {
                        KeyText::Int(i) => path.push_str(itoa::Buffer::new().format(*i)),
                        KeyText::Text(t) => path.extend(utf8_percent_encode(t, KEY_CHARS)),
                    }
                }
                path.push_str(suffix);
                (path, None)
            }
            None => {
                // Written directly: a `serde_json::Value` per key cost ~350 instructions a key.
                let mut body = Vec::with_capacity(2 + 8 * keys.len());
                body.push(b'[');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    key.write_json(&mut body);
                }
                body.push(b']');
                (self.prefix.clone(), Some(body.into()))
            }
        }
    }
}

/// Fetches all keys of one group, split at the backend's max batch size, chunks in parallel.
async fn fetch_batch(
    backends: &Backends,
    route: &BatchRoute,
    keys: Vec<Key>,
    deadline: Instant,
    log: Option<&FetchLog>,
) -> BatchOutcome {
    let backend = backends.get(route.backend);
    let calls = keys.chunks(backend.max_batch_size()).map(|chunk| async move {
        let (path, body) = route.render(chunk);
        // A batch is a read whatever its method: it may be retried, and shared.
        let key = CallKey::new(Call { method: route.method, path, body, keep: route.keep.clone() });
        let path = &key.call().path;
        let call = backend.read(&key, deadline, chunk.len());
        let result =
            FetchLog::record(log, backend, route.method, path, chunk.len(), call).await.and_then(|json| {
                match_items(json, route.match_field.as_deref(), chunk).map_err(|reason| FetchError::Body {
                    backend: Arc::from(backend.name()),
                    method: route.method.as_str(),
                    path: super::transport::shown(path),
                    reason,
                })
            });
        (chunk, result)
    });
    let mut outcome = BatchOutcome { slots: Vec::with_capacity(keys.len()), ..Default::default() };
    // Chunks in the order of their keys: each key's slot is at its place in the group.
    for (chunk, result) in join_all(calls).await {
        match result {
            Ok(items) => {
                outcome.slots.extend(items.into_iter().map(|i| i.map_or(Slot::Missing, Slot::Found)))
            }
            Err(e) => {
                outcome.errors.push(e);
                let failed = outcome.errors.len() - 1;
                outcome.slots.extend(chunk.iter().map(|_| Slot::Failed(failed)));
            }
        }
    }
    outcome
}

/// Matches a batch answer back to `keys`: per key, in order, its item or `None`. The answer
/// is an array of items carrying `match_field`, or, without a match field, an object keyed by
/// key. Each item is held through the one shared answer. An array answering keys in the
/// order asked, some perhaps left out (the usual case: a backend omits what it does not
/// have), is matched item by item; any other through a map of the items' keys (where a key
/// appears twice, the later item is the one kept).
fn match_items(
    answer: Arc<Tape>,
    match_field: Option<&str>,
    keys: &[Key],
) -> Result<Vec<Option<Held>>, String> {
    let root = answer.root();
    if let (View::List(items), Some(field)) = (root.view(), match_field)
        && let Some(matched) = in_order(items, field, keys, &answer)
    {
        return Ok(matched);
    }
    let found: Vec<(KeyText, Val<'_>)> = match (root.view(), match_field) {
        (View::List(items), Some(field)) => items
            .map(|item| {
                item.get(field)
                    .and_then(KeyText::of)
                    .map(|k| (k, item))
                    .ok_or_else(|| format!("an item has no scalar {field:?} to match keys on"))
            })
            .collect::<Result<_, _>>()?,
        (View::Obj(fields), None) => fields.map(|(k, v)| (KeyText::text(k), v)).collect(),
        (_, Some(field)) => return Err(format!("expected a JSON array of items with {field:?}")),
        (_, None) => return Err("expected a JSON object keyed by key".to_owned()),
    };
    let by_key: HashMap<KeyText, Val<'_>, Fast> = found.into_iter().collect();
    Ok(keys.iter().map(|k| by_key.get(&k.text).map(|&v| Held::of(&answer, v))).collect())
}

/// The items matched to `keys` when each item answers a later key than the one before (keys
/// without an item are `None`); `None` when the items are in another order, or one matches no
/// key. The keys are distinct: the batcher asks each key of a route once.
fn in_order(items: Items<'_>, field: &str, keys: &[Key], answer: &Arc<Tape>) -> Option<Vec<Option<Held>>> {
    if items.len() > keys.len() {
        return None;
    }
    let mut out = Vec::with_capacity(keys.len());
    for item in items {
        let v = item.get(field)?;
        loop {
            let key = keys.get(out.len())?;
            if key.text.is(v) {
                out.push(Some(Held::of(answer, item)));
                break;
            }
            out.push(None);
        }
    }
    out.resize(keys.len(), None);
    Some(out)
}

/// What one batch dispatch produced, by each key's place in its group (the order the keys
/// were sent in): the matched item, nothing, or the failure of the key's chunk. A key is found
/// by its place, not hashed again.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Set when the whole dispatch was lost (its task panicked or was cancelled).
    pub all_failed: Option<FetchError>,
    pub slots: Vec<Slot>,
    /// The failed chunks' errors, each shared by its keys' slots.
    pub errors: Vec<FetchError>,
}

/// One key's share of a [`BatchOutcome`].
#[derive(Debug)]
pub enum Slot {
    /// Shared: every resolver that asked for the key gets the same item without a copy.
    Found(super::json::Held),
    /// The backend did not return it.
    Missing,
    /// Its chunk failed: the index of the error in [`BatchOutcome::errors`].
    Failed(usize),
}

/// A key as matched against the backend's answer: numbers and strings alike (`7` and `"7"`
/// are one key). An integer's canonical text is held as the integer, so the common case
/// (numeric IDs) hashes, compares and renders without a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyText {
    Int(i64),
    Text(Arc<str>),
}

impl KeyText {
    /// The key of a scalar (`None` for null, a list or an object).
    pub fn of(value: Val<'_>) -> Option<Self> {
        Some(match value.view() {
            View::Int(i) => KeyText::Int(i),
            View::Str(s) => KeyText::text(s),
            View::UInt(_) | View::Float(_) => KeyText::Text(Arc::from(value.to_string())),
            View::Bool(b) => KeyText::Text(Arc::from(if b { "true" } else { "false" })),
            View::Null | View::List(_) | View::Obj(_) => return None,
        })
    }

    /// Whether `value` has this key: `KeyText::of(value) == Some(self)`, without building one.
    pub fn is(&self, value: Val<'_>) -> bool {
        match (self, value.view()) {
            (KeyText::Int(k), View::Int(v)) => *k == v,
            // A text key is never an integer's canonical text (`text` made that an `Int`).
            (KeyText::Text(k), View::Str(v)) => **k == *v,
            (KeyText::Int(k), View::Str(v)) => itoa::Buffer::new().format(*k) == v,
            _ => KeyText::of(value).as_ref() == Some(self),
        }
    }

    /// The key of a text: an integer when the text is one as it would be written.
    pub fn text(s: &str) -> Self {
        match s.parse::<i64>() {
            Ok(i) if itoa::Buffer::new().format(i) == s => KeyText::Int(i),
            _ => KeyText::Text(Arc::from(s)),
        }
    }
}

impl std::fmt::Display for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyText::Int(i) => f.write_str(itoa::Buffer::new().format(*i)),
            KeyText::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn match_items_by_field_and_by_object_key() {
        let d = |v| Arc::new(Tape::from_json(&v));
        let keys = |list: serde_json::Value| -> Vec<Key> {
            list.as_array().unwrap().iter().filter_map(|v| Key::of(Tape::from_json(v).root())).collect()
        };
        let got = |items: Vec<Option<Held>>| -> Vec<serde_json::Value> {
            items.iter().map(|i| i.as_ref().map_or(json!(null), |h| h.val().to_json())).collect()
        };
        // In the order asked (numbers and their texts alike): item by item.
        let answer = json!([{"id": 1, "n": "a"}, {"id": "2"}]);
        let items = match_items(d(answer.clone()), Some("id"), &keys(json!([1, 2]))).unwrap();
        assert_eq!(got(items), answer.as_array().unwrap().clone());
        // In order with some left out: item by item, the missing ones `None`.
        let answer = json!([{"id": 2}, {"id": "4"}]);
        let items = match_items(d(answer), Some("id"), &keys(json!([1, 2, 3, 4, 5]))).unwrap();
        let null = json!(null);
        assert_eq!(got(items), vec![null.clone(), json!({"id": 2}), null.clone(), json!({"id": "4"}), null]);
        // Out of order, one missing, one not asked for, a duplicate (the later kept): by map.
        let answer = json!([{"id": 3}, {"id": "x", "v": 1}, {"id": 1}, {"id": "x", "v": 2}]);
        let items = match_items(d(answer), Some("id"), &keys(json!([1, "x", 2]))).unwrap();
        assert_eq!(got(items), vec![json!({"id": 1}), json!({"id": "x", "v": 2}), json!(null)]);
        // Keyed by key: `7` and `"7"` are one key, `07` another.
        let answer = json!({"7": {"x": 1}, "07": {}, "a": {"y": 2}});
        let items = match_items(d(answer), None, &keys(json!(["a", 7, "8"]))).unwrap();
        assert_eq!(got(items), vec![json!({"y": 2}), json!({"x": 1}), json!(null)]);
        assert_eq!(KeyText::of(Tape::from_json(&json!(7.0)).root()), Some(KeyText::text("7.0")));
        assert_eq!(KeyText::of(Tape::from_json(&json!("-0")).root()), Some(KeyText::Text(Arc::from("-0"))));
        assert_eq!(KeyText::text("-12"), KeyText::Int(-12));
        assert!(match_items(d(json!({"a": 1})), Some("id"), &keys(json!([1]))).is_err());
        let e = match_items(d(json!([{"x": 1}])), Some("id"), &keys(json!([1]))).unwrap_err();
        assert!(e.contains("\"id\""), "{e}");
    }

    #[test]
    fn a_key_is_the_same_key_however_the_answer_writes_it() {
        let values =
            [json!(7), json!("7"), json!("07"), json!(-1), json!("-1"), json!("a"), json!(7.0), json!(true)];
        for key in &values {
            let Some(k) = KeyText::of(Tape::from_json(key).root()) else { continue };
            for v in &values {
                let t = Tape::from_json(v);
                let v = t.root();
                assert_eq!(k.is(v), KeyText::of(v).as_ref() == Some(&k), "{key} {v}");
            }
        }
    }

    #[test]
    fn render_keys_in_url_and_in_body() {
        let keys: Vec<Key> =
            [json!(1), json!("a b")].iter().filter_map(|v| Key::of(Tape::from_json(v).root())).collect();
        let route = BatchRoute {
            backend: 0,
            method: Method::Get,
            prefix: "/t?ids=".into(),
            suffix: Some("&size=M".into()),
            match_field: None,
            keep: None,
        };
        assert_eq!(route.render(&keys), ("/t?ids=1,a%20b&size=M".to_owned(), None));
        let route = BatchRoute { method: Method::Post, suffix: None, ..route };
        let body = |route: &BatchRoute, keys: &[Key]| {
            serde_json::from_slice::<Value>(&route.render(keys).1.expect("a POST body")).unwrap()
        };
        assert_eq!(body(&route, &keys), json!([1, "a b"]));
        // In a POST body every key goes as the answer wrote it.
        let sent = [
            json!(7),
            json!("7"),
            json!(-1),
            json!(18446744073709551615u64),
            json!(1.5),
            json!(true),
            json!("x"),
        ];
        let keys: Vec<Key> = sent.iter().filter_map(|v| Key::of(Tape::from_json(v).root())).collect();
        assert_eq!(body(&route, &keys), json!(sent));
    }
}
