//! The REST routes of each demo backend, the fault middleware in front of them, and the
//! per-backend control routes (`/_demo/stats`, `/_demo/faults`) that are neither counted nor
//! faulted, so a separate `facade demo-backends` process can be steered too.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::data::{MAX_ROWS, SIZES, TITLES, mix};
use super::{BackendState, Faults, MAX_BATCH_KEYS, MAX_WRITES};

type St = State<Arc<BackendState>>;

pub(super) fn router(state: Arc<BackendState>) -> Router {
    let api = match state.name {
        "members" => Router::new().route("/profiles/{id}", get(profile)).route("/profiles", get(profiles)),
        "lists" => Router::new()
            .route("/profiles/{id}/rows", get(rows))
            .route("/profiles/{id}/my-list", get(my_list).post(add_to_my_list)),
        "catalog" => Router::new()
            .route("/titles/{id}", get(title))
            .route("/titles", get(titles))
            // The catalog's copy of the ratings (seeded, without the votes cast on `ratings`):
            // where `Title.rating` can move to by editing only the schema (docs/schema-evolution.md).
            .route("/titles/ratings", post(ratings))
            .route("/videos/{id}", get(video))
            .route("/search", get(search))
            .route("/seasons", get(seasons))
            .route("/episodes", get(episodes)),
        "artwork" => Router::new().route("/artwork/{id}", get(artwork)).route("/artwork", get(artworks)),
        "ratings" => Router::new()
            .route("/ratings/{id}", get(rating))
            .route("/ratings/{id}/votes", post(vote))
            .route("/ratings/batch", post(ratings)),
        "history" => Router::new()
            .route("/profiles/{pid}/bookmarks/{tid}", get(bookmark))
            .route("/profiles/{pid}/bookmarks", get(bookmarks))
            .route("/bookmarks", post(save_bookmark)),
        other => unreachable!("no routes for demo backend {other}"),
    };
    let api = api.layer(middleware::from_fn_with_state(state.clone(), faults_layer));
    Router::new()
        .route("/_demo/stats", get(stats))
        .route("/_demo/faults", post(set_faults))
        .merge(api)
        .with_state(state)
}

/// Counts the request, then applies the backend's current faults before the handler runs.
async fn faults_layer(State(state): St, request: Request, next: Next) -> Response {
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(tp) = request.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        *state.last_traceparent.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(tp.to_owned());
    }
    let mut faults = state.faults.subscribe();
    if faults.borrow().hang {
        // Hangs until the knob is turned off (or the client gives up and drops the request).
        let _ = faults.wait_for(|f| !f.hang).await;
    }
    let f = *faults.borrow();
    let jitter = if f.jitter_ms > 0 { mix(n) % (f.jitter_ms + 1) } else { 0 };
    let delay = f.latency_ms + jitter;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let owed =
        state.fail_next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
    if owed || (f.error_rate > 0.0 && (mix(n ^ 0xE44) % 10_000) as f64 / 10_000.0 < f.error_rate) {
        let status = f
            .error_status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, "injected fault").into_response();
        if let Some(secs) = f.retry_after_secs {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        return response;
    }
    next.run(request).await
}

async fn stats(State(state): St) -> Json<Value> {
    Json(json!({"name": state.name, "requests": state.requests(), "faults": state.faults()}))
}

async fn set_faults(State(state): St, Json(faults): Json<Faults>) -> Response {
    match faults.validate() {
        Ok(()) => {
            state.set_faults(faults);
            Json(faults).into_response()
        }
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

fn not_found(what: &str, id: impl std::fmt::Display) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": format!("{what} {id} not found")}))).into_response()
}

fn bad_request(reason: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": reason}))).into_response()
}

fn found<T: serde::Serialize>(what: &str, id: u64, item: Option<T>) -> Response {
    one(what, id, |out| put(out, item))
}

/// Answers one record, written by `write` (false: there is none, 404).
fn one(what: &str, id: u64, write: impl FnOnce(&mut Vec<u8>) -> bool) -> Response {
    let mut out = Vec::with_capacity(256);
    match write(&mut out) {
        true => json_body(out),
        false => not_found(what, id),
    }
}

fn json_body(bytes: Vec<u8>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Appends `item`'s JSON; false if there is none.
fn put<T: serde::Serialize>(out: &mut Vec<u8>, item: Option<T>) -> bool {
    item.is_some_and(|item| serde_json::to_writer(out, &item).is_ok())
}

/// Appends a seeded record's JSON from its memo slot, made by `item` the first time; where
/// there is no slot (another backend, an ID out of range), made now.
fn put_memo<T: serde::Serialize>(
    memo: &[OnceLock<Box<[u8]>>],
    slot: Option<usize>,
    item: impl FnOnce() -> Option<T>,
    out: &mut Vec<u8>,
) -> bool {
    let Some(cell) = slot.and_then(|n| memo.get(n)) else {
        return put(out, item());
    };
    if let Some(bytes) = cell.get() {
        out.extend_from_slice(bytes);
        return true;
    }
    let Some(item) = item() else { return false };
    let Ok(bytes) = serde_json::to_vec(&item) else { return false };
    out.extend_from_slice(cell.get_or_init(|| bytes.into()));
    true
}

/// A title's place in the catalog (its memo slot), or `None` for an ID outside it: such an
/// ID has no slot (in the artwork memo it would reach another size's slots).
fn title_index(s: &BackendState, id: u64) -> Option<usize> {
    s.data.has_title(id).then(|| usize::try_from(id - 1).ok()).flatten()
}

fn put_title(s: &BackendState, id: u64, out: &mut Vec<u8>) -> bool {
    put_memo(&s.memo.titles, title_index(s, id), || s.data.title(id), out)
}

fn put_artwork(s: &BackendState, id: u64, size: &str, out: &mut Vec<u8>) -> bool {
    let kind = SIZES.iter().position(|k| k.eq_ignore_ascii_case(size));
    let slot = kind.zip(title_index(s, id)).map(|(kind, n)| kind * TITLES as usize + n);
    put_memo(&s.memo.artwork, slot, || s.data.artwork(id, size), out)
}

/// The IDs of the query parameter `name` (`ids=1,2,3`), capped at [`MAX_BATCH_KEYS`].
fn ids_param(query: Option<&str>, name: &str) -> Result<Vec<u64>, String> {
    match param(query, name) {
        Some(raw) => parse_ids(&raw),
        None => Err(format!("missing query parameter {name}")),
    }
}

/// The value of the query parameter `name`, read from the raw query: decoding the whole
/// query into owned strings first, as the `Query` extractor does, was half of a batch route's
/// work (docs/benchmarks-history.md §22). A value with `%` or `+` in it is decoded, as `Query` would,
/// and a key written with escapes is still found.
fn param<'q>(query: Option<&'q str>, name: &str) -> Option<Cow<'q, str>> {
    let query = query.unwrap_or_default();
    let raw = query.split('&').filter_map(|pair| pair.split_once('=')).find(|(key, _)| *key == name);
    match raw {
        Some((_, value)) if !value.bytes().any(|b| b == b'%' || b == b'+') => Some(Cow::Borrowed(value)),
        _ => form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, v)| v),
    }
}

/// Parses `1,2,3` into IDs (spaces around each allowed, empty ones skipped), capped at
/// [`MAX_BATCH_KEYS`].
fn parse_ids(raw: &str) -> Result<Vec<u64>, String> {
    // Sized once: collecting through `Result` grew the vector step by step (a quarter of a
    // demo backend's work per home query). An ID and its comma take two bytes at least.
    let mut ids = Vec::with_capacity((raw.len() / 2 + 1).min(MAX_BATCH_KEYS + 1));
    // Split on bytes: `str::split` looks for each comma with a vector search set up anew
    // for every ID of a few digits (a tenth of a batch route's work).
    for part in raw.as_bytes().split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        match digits(part) {
            Some(id) => ids.push(id),
            // Anything else as `str::parse` takes it (a leading `+`), or named.
            None => {
                let s = String::from_utf8_lossy(part);
                ids.push(s.parse().map_err(|_| format!("bad id {s:?} in ids"))?);
            }
        }
    }
    check_batch(ids)
}

/// `part` as a number if it is only decimal digits and fits.
fn digits(part: &[u8]) -> Option<u64> {
    part.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn check_batch(ids: Vec<u64>) -> Result<Vec<u64>, String> {
    if ids.len() > MAX_BATCH_KEYS {
        return Err(format!("at most {MAX_BATCH_KEYS} ids per call, got {}", ids.len()));
    }
    Ok(ids)
}

/// Answers a batch: the items found for `ids`, in order, each appended by `write` (false:
/// not found, left out) straight into one body with room for `item_bytes` per item (a body
/// that outgrows it is copied whole); or 400 naming the bad input.
fn batch(
    ids: Result<Vec<u64>, String>,
    item_bytes: usize,
    mut write: impl FnMut(u64, &mut Vec<u8>) -> bool,
) -> Response {
    let ids = match ids {
        Ok(ids) => ids,
        Err(reason) => return bad_request(reason),
    };
    let mut out = Vec::with_capacity(2 + item_bytes * ids.len());
    out.push(b'[');
    for id in ids {
        let mark = out.len();
        if mark > 1 {
            out.push(b',');
        }
        if !write(id, &mut out) {
            out.truncate(mark);
        }
    }
    out.push(b']');
    json_body(out)
}

#[derive(Deserialize)]
struct Ids {
    ids: String,
}

async fn profile(State(s): St, Path(id): Path<u64>) -> Response {
    found("profile", id, s.data.profile(id))
}

async fn profiles(State(s): St, RawQuery(q): RawQuery) -> Response {
    batch(ids_param(q.as_deref(), "ids"), 128, |id, out| put(out, s.data.profile(id)))
}

#[derive(Deserialize)]
struct RowsQuery {
    limit: Option<usize>,
}

async fn rows(State(s): St, Path(id): Path<u64>, Query(q): Query<RowsQuery>) -> Response {
    found("profile", id, s.data.rows(id, q.limit.unwrap_or(10).min(MAX_ROWS)))
}

async fn title(State(s): St, Path(id): Path<u64>) -> Response {
    one("title", id, |out| put_title(&s, id, out))
}

async fn titles(State(s): St, RawQuery(q): RawQuery) -> Response {
    batch(ids_param(q.as_deref(), "ids"), 256, |id, out| put_title(&s, id, out))
}

/// A film or a series as one JSON object, with `kind` naming its facade type.
fn video_json(s: &BackendState, id: &str) -> Option<Value> {
    let (mut v, kind) = match id.parse::<u64>() {
        Ok(n) => (serde_json::to_value(s.data.title(n)?).ok()?, "Title"),
        Err(_) => (serde_json::to_value(s.data.show(id)?).ok()?, "Show"),
    };
    v["kind"] = json!(kind);
    if kind == "Title" {
        v["id"] = json!(id);
    }
    Some(v)
}

/// `GET /videos/{id}`: a title (numeric ID) or a series (`s` and a number).
async fn video(State(s): St, Path(id): Path<String>) -> Response {
    match video_json(&s, &id) {
        Some(v) => Json(v).into_response(),
        None => not_found("video", id),
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    limit: Option<usize>,
}

/// Most titles a search looks through (the demo scans; a real service would index).
const SEARCH_SCAN: u64 = 2_000;

/// `GET /search?q=…&limit=…`: series, then titles among the first 2,000, whose name holds
/// the term (case-insensitive).
async fn search(State(s): St, Query(q): Query<SearchQuery>) -> Response {
    let term = q.q.trim().to_lowercase();
    if term.is_empty() || term.len() > 100 {
        return bad_request("q must be 1 to 100 characters".to_owned());
    }
    let limit = q.limit.unwrap_or(10).min(MAX_BATCH_KEYS);
    let shows = (1..=super::data::SHOWS).map(|n| format!("s{n}"));
    let titles = (1..=SEARCH_SCAN).map(|n| n.to_string());
    let found: Vec<Value> = shows
        .chain(titles)
        .filter_map(|id| video_json(&s, &id))
        .filter(|v| v["name"].as_str().is_some_and(|n| n.to_lowercase().contains(&term)))
        .take(limit)
        .collect();
    Json(found).into_response()
}

/// `GET /seasons?ids=s1-1,s1-2`.
async fn seasons(State(s): St, Query(q): Query<Ids>) -> Response {
    let ids: Vec<&str> = q.ids.split(',').filter(|i| !i.is_empty()).collect();
    if ids.len() > MAX_BATCH_KEYS {
        return bad_request(format!("at most {MAX_BATCH_KEYS} ids per call, got {}", ids.len()));
    }
    Json(ids.into_iter().filter_map(|id| s.data.season(id)).collect::<Vec<_>>()).into_response()
}

/// `GET /episodes?ids=s1-1-1,s1-1-2`.
async fn episodes(State(s): St, Query(q): Query<Ids>) -> Response {
    let ids: Vec<&str> = q.ids.split(',').filter(|i| !i.is_empty()).collect();
    if ids.len() > MAX_BATCH_KEYS {
        return bad_request(format!("at most {MAX_BATCH_KEYS} ids per call, got {}", ids.len()));
    }
    Json(ids.into_iter().filter_map(|id| s.data.episode(id)).collect::<Vec<_>>()).into_response()
}

#[derive(Deserialize)]
struct SizeQuery {
    size: Option<String>,
}

async fn artwork(State(s): St, Path(id): Path<u64>, Query(q): Query<SizeQuery>) -> Response {
    let size = q.size.as_deref().unwrap_or("MEDIUM");
    one("artwork for title", id, |out| put_artwork(&s, id, size, out))
}

async fn artworks(State(s): St, RawQuery(q): RawQuery) -> Response {
    let size = param(q.as_deref(), "size");
    let size = size.as_deref().unwrap_or("MEDIUM");
    batch(ids_param(q.as_deref(), "ids"), 128, |id, out| put_artwork(&s, id, size, out))
}

async fn rating(State(s): St, Path(id): Path<u64>) -> Response {
    found("rating for title", id, rating_of(&s, id))
}

/// A title's seeded rating with the votes cast since.
fn rating_of(s: &BackendState, id: u64) -> Option<super::data::Rating> {
    let votes = s.writes().votes.get(&id).copied();
    Some(with_votes(s.data.rating(id)?, votes))
}

/// `r` with `votes` (sum of stars, count) added.
fn with_votes(mut r: super::data::Rating, votes: Option<(u64, u64)>) -> super::data::Rating {
    if let Some((sum, n)) = votes {
        r.average = ((r.average * r.count as f64 + sum as f64) / (r.count + n) as f64 * 10.0).round() / 10.0;
        r.count += n;
    }
    r
}

/// Appends a title's rating: from its memo slot while no vote was cast for it, else made now.
fn put_rating(s: &BackendState, id: u64, votes: Option<(u64, u64)>, out: &mut Vec<u8>) -> bool {
    match votes {
        None => put_memo(&s.memo.ratings, title_index(s, id), || s.data.rating(id), out),
        Some(_) => put(out, s.data.rating(id).map(|r| with_votes(r, votes))),
    }
}

fn insufficient_storage(what: &str) -> Response {
    let message = format!("the demo keeps at most {MAX_WRITES} {what}");
    (StatusCode::INSUFFICIENT_STORAGE, Json(json!({"error": message}))).into_response()
}

/// An ID given as a number or a numeric string.
fn id_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `POST /ratings/{id}/votes` with `{"stars": 1..5}`: answers the title's new rating.
async fn vote(State(s): St, Path(id): Path<u64>, Json(body): Json<Value>) -> Response {
    let Some(stars) = body.get("stars").and_then(Value::as_u64).filter(|n| (1..=5).contains(n)) else {
        return bad_request(format!(
            "stars must be 1 to 5, got {}",
            body.get("stars").unwrap_or(&Value::Null)
        ));
    };
    if s.data.rating(id).is_none() {
        return not_found("title", id);
    }
    {
        let mut writes = s.writes();
        if writes.votes.len() >= MAX_WRITES && !writes.votes.contains_key(&id) {
            return insufficient_storage("rated titles");
        }
        let entry = writes.votes.entry(id).or_default();
        entry.0 += stars;
        entry.1 += 1;
    }
    found("rating for title", id, rating_of(&s, id))
}

/// One item of a `POST /ratings/batch` body: a title ID (a number or a numeric string), or
/// the JSON text of an item that is not one.
enum TitleIdItem {
    Id(u64),
    Bad(String),
}

/// Read item by item without a `serde_json::Value` each: a batch of 200 IDs read as values
/// was a third of the ratings backend's work per home query.
impl<'de> Deserialize<'de> for TitleIdItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Item;
        impl<'de> serde::de::Visitor<'de> for Item {
            type Value = TitleIdItem;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a title ID")
            }
            fn visit_u64<E>(self, n: u64) -> Result<TitleIdItem, E> {
                Ok(TitleIdItem::Id(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<TitleIdItem, E> {
                Ok(u64::try_from(n).map_or_else(|_| TitleIdItem::Bad(n.to_string()), TitleIdItem::Id))
            }
            fn visit_f64<E>(self, n: f64) -> Result<TitleIdItem, E> {
                Ok(TitleIdItem::Bad(json!(n).to_string()))
            }
            fn visit_str<E>(self, s: &str) -> Result<TitleIdItem, E> {
                Ok(s.parse().map_or_else(|_| TitleIdItem::Bad(json!(s).to_string()), TitleIdItem::Id))
            }
            fn visit_bool<E>(self, b: bool) -> Result<TitleIdItem, E> {
                Ok(TitleIdItem::Bad(b.to_string()))
            }
            fn visit_unit<E>(self) -> Result<TitleIdItem, E> {
                Ok(TitleIdItem::Bad("null".to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<TitleIdItem, A::Error> {
                let v = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(TitleIdItem::Bad(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<TitleIdItem, A::Error> {
                let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(TitleIdItem::Bad(v.to_string()))
            }
        }
        d.deserialize_any(Item)
    }
}

/// `POST /ratings/batch` with a JSON array of title IDs (numbers or numeric strings).
async fn ratings(State(s): St, Json(items): Json<Vec<TitleIdItem>>) -> Response {
    let ids: Result<Vec<u64>, String> = items
        .into_iter()
        .map(|item| match item {
            TitleIdItem::Id(id) => Ok(id),
            TitleIdItem::Bad(v) => Err(format!("bad title id {v} in body")),
        })
        .collect();
    // The votes looked up under one lock for the whole batch.
    let writes = s.writes();
    batch(ids.and_then(check_batch), 64, |id, out| put_rating(&s, id, writes.votes.get(&id).copied(), out))
}

async fn bookmark(State(s): St, Path((pid, tid)): Path<(u64, u64)>) -> Response {
    found("bookmark for title", tid, bookmark_of(&s, pid, tid))
}

/// A saved bookmark, else the seeded one.
fn bookmark_of(s: &BackendState, pid: u64, tid: u64) -> Option<super::data::Bookmark> {
    saved_or_seeded(s, &s.writes(), pid, tid)
}

fn saved_or_seeded(
    s: &BackendState,
    writes: &super::Writes,
    pid: u64,
    tid: u64,
) -> Option<super::data::Bookmark> {
    match writes.bookmarks.get(&(pid, tid)) {
        Some(&position_seconds) => {
            Some(super::data::Bookmark { profile_id: pid, title_id: tid, position_seconds })
        }
        None => s.data.bookmark(pid, tid),
    }
}

/// `POST /bookmarks` with `{"input": {"profileId", "titleId", "positionSeconds"}}`.
async fn save_bookmark(State(s): St, Json(body): Json<Value>) -> Response {
    let input = body.get("input").unwrap_or(&body);
    let (Some(pid), Some(tid)) = (id_of(input.get("profileId")), id_of(input.get("titleId"))) else {
        return bad_request("input needs profileId and titleId".to_owned());
    };
    let Some(position) =
        input.get("positionSeconds").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok())
    else {
        return bad_request("input needs positionSeconds, a non-negative number".to_owned());
    };
    if s.data.profile(pid).is_none() || s.data.title(tid).is_none() {
        return not_found("profile or title", format!("{pid}/{tid}"));
    }
    {
        let mut writes = s.writes();
        if writes.bookmarks.len() >= MAX_WRITES && !writes.bookmarks.contains_key(&(pid, tid)) {
            return insufficient_storage("bookmarks");
        }
        writes.bookmarks.insert((pid, tid), position);
    }
    found("bookmark for title", tid, bookmark_of(&s, pid, tid))
}

/// A profile's My List as JSON.
fn my_list_json(s: &BackendState, pid: u64) -> Value {
    let ids = s.writes().my_list.get(&pid).cloned().unwrap_or_default();
    json!({"profileId": pid.to_string(), "titleIds": ids.iter().map(u64::to_string).collect::<Vec<_>>()})
}

async fn my_list(State(s): St, Path(pid): Path<u64>) -> Response {
    if s.data.profile(pid).is_none() {
        return not_found("profile", pid);
    }
    Json(my_list_json(&s, pid)).into_response()
}

/// `POST /profiles/{id}/my-list` with `{"titleId"}`: adds it (once); answers the list.
async fn add_to_my_list(State(s): St, Path(pid): Path<u64>, Json(body): Json<Value>) -> Response {
    let Some(tid) = id_of(body.get("titleId")) else {
        return bad_request("titleId is required".to_owned());
    };
    if s.data.profile(pid).is_none() || s.data.title(tid).is_none() {
        return not_found("profile or title", format!("{pid}/{tid}"));
    }
    {
        let mut writes = s.writes();
        let full = writes.my_list.len() >= MAX_WRITES && !writes.my_list.contains_key(&pid);
        let list = writes.my_list.get(&pid).map_or(0, Vec::len);
        if full || list >= MAX_WRITES {
            return insufficient_storage("My List entries");
        }
        let list = writes.my_list.entry(pid).or_default();
        if !list.contains(&tid) {
            list.push(tid);
        }
    }
    Json(my_list_json(&s, pid)).into_response()
}

async fn bookmarks(State(s): St, Path(pid): Path<u64>, RawQuery(q): RawQuery) -> Response {
    if s.data.profile(pid).is_none() {
        return not_found("profile", pid);
    }
    let writes = s.writes();
    batch(ids_param(q.as_deref(), "titleIds"), 64, |tid, out| {
        saved_or_seeded(&s, &writes, pid, tid).map(|b| b.write_json(out)).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each item of a ratings batch is an ID or the JSON text the error names.
    #[test]
    fn ratings_batch_items_are_ids_or_their_json_text() {
        let items: Vec<TitleIdItem> =
            serde_json::from_str(r#"[1, "2", -3, 1.5, "x", null, true, [1, 2], {"a": 1}]"#).unwrap();
        let shown: Vec<String> = items
            .into_iter()
            .map(|i| match i {
                TitleIdItem::Id(id) => format!("id {id}"),
                TitleIdItem::Bad(text) => text,
            })
            .collect();
        assert_eq!(shown, ["id 1", "id 2", "-3", "1.5", "\"x\"", "null", "true", "[1,2]", r#"{"a":1}"#]);
    }

    #[test]
    fn batch_ids_are_parsed_or_named() {
        assert_eq!(parse_ids("1, 2,,3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_ids("1,x").unwrap_err(), r#"bad id "x" in ids"#);
        assert_eq!(parse_ids("+7,18446744073709551615").unwrap(), [7, u64::MAX]);
        assert_eq!(parse_ids("18446744073709551616").unwrap_err(), r#"bad id "18446744073709551616" in ids"#);
        let too_many = (1..=MAX_BATCH_KEYS + 1).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(
            parse_ids(&too_many).unwrap_err(),
            format!("at most {MAX_BATCH_KEYS} ids per call, got {}", MAX_BATCH_KEYS + 1)
        );
    }

    /// Read from the raw query, a parameter is what the `Query` extractor would decode.
    #[test]
    fn query_parameters_read_raw_are_decoded_like_query_would() {
        let ids = |q: &str| ids_param(Some(q), "ids");
        assert_eq!(ids("ids=1,2,3&size=SMALL").unwrap(), [1, 2, 3]);
        assert_eq!(ids("size=SMALL&ids=4").unwrap(), [4]);
        assert_eq!(ids("ids=1%2C2%2c3").unwrap(), [1, 2, 3], "escaped commas");
        assert_eq!(ids("ids=1,+2").unwrap(), [1, 2], "a + is a space");
        assert_eq!(ids("%69ds=5,6").unwrap(), [5, 6], "an escaped key");
        assert_eq!(ids("ids=").unwrap(), Vec::<u64>::new());
        assert_eq!(ids("idsx=1").unwrap_err(), "missing query parameter ids");
        assert_eq!(ids_param(None, "titleIds").unwrap_err(), "missing query parameter titleIds");
        assert_eq!(ids("ids=1,%FF").unwrap_err(), "bad id \"\u{fffd}\" in ids");
        assert_eq!(param(Some("ids=1&size=LARGE"), "size").as_deref(), Some("LARGE"));
        assert_eq!(param(Some("size=x%20y"), "size").as_deref(), Some("x y"));
        assert_eq!(param(Some("ids=1"), "size"), None);
    }
}
