//! `/graphql` per the GraphQL-over-HTTP spec: POST with JSON, GET for queries only, content
//! negotiation between `application/graphql-response+json` and `application/json`, and the
//! spec's status codes (400 for request errors under the new media type, 405 for a mutation
//! over GET, 406 for an unacceptable Accept, 415 for a body that is not JSON).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::AppState;
use super::error::status_of;
use crate::errors::Code;
use crate::flight::Ticket;
use crate::graphql::{Answer, GraphqlRequest, OperationKind};
use crate::telemetry::metrics as m;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// The media type the response is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphqlResponse,
    Json,
}

impl MediaType {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            MediaType::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        })
    }
}

/// Picks the response media type from `Accept`: the acceptable one with the highest q,
/// `application/graphql-response+json` on a tie. No Accept header means `application/json`.
fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers.get(header::ACCEPT) else { return Some(MediaType::Json) };
    let accept = accept.to_str().ok()?;
    let mut best: Option<(f32, MediaType)> = None;
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let essence = params.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let mut charset_ok = true;
        for p in params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.trim().parse().unwrap_or(0.0),
                "charset" => charset_ok = v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8"),
                _ => {}
            }
        }
        if q <= 0.0 || !charset_ok {
            continue;
        }
        let media = match essence.as_str() {
            GRAPHQL_RESPONSE_JSON => MediaType::GraphqlResponse,
            JSON | "application/*" | "*/*" => MediaType::Json,
            _ => continue,
        };
        let better = match best {
            None => true,
            Some((bq, bm)) => q > bq || (q == bq && media == MediaType::GraphqlResponse && bm != media),
        };
        if better {
            best = Some((q, media));
        }
    }
    best.map(|(_, m)| m)
}

fn respond(media: MediaType, status: StatusCode, body: &Value) -> Response {
    respond_bytes(media, status, body.to_string().into())
}

fn respond_bytes(media: MediaType, status: StatusCode, body: bytes::Bytes) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, media.header());
    response
}

/// A request that is not a well-formed GraphQL-over-HTTP request: 400 whatever the media type.
fn malformed(media: MediaType, message: impl Into<String>) -> Response {
    respond(media, StatusCode::BAD_REQUEST, &crate::errors::body(None, message))
}

fn not_acceptable() -> Response {
    let body = crate::errors::body(None, format!("Accept must allow {GRAPHQL_RESPONSE_JSON} or {JSON}"));
    respond(MediaType::Json, StatusCode::NOT_ACCEPTABLE, &body)
}

fn outcome(media: MediaType, outcome: &Answer) -> Response {
    let status = if outcome.request_error && media == MediaType::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    respond_bytes(media, status, outcome.body.clone())
}

/// What makes two queries the same query: they get the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    query: String,
    operation_name: Option<String>,
    /// The variables as JSON text (as sent, key order included).
    variables: String,
    introspection: bool,
}

/// Identical queries in flight (`[graphql] share_identical_requests`).
pub type SharedRequests = crate::flight::InFlight<RequestKey, Arc<Answer>>;

/// Most distinct queries shared at once.
pub const MAX_SHARED_REQUESTS: usize = 4_096;

/// Reads an optional JSON object (variables, extensions) that may also be null.
fn optional_object(value: Option<Value>, what: &str) -> Result<Option<Map<String, Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(format!("{what} must be a JSON object, got {other}")),
    }
}

/// A request as it arrived, before persisted documents are looked up.
#[derive(Debug, Default)]
pub struct Incoming {
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
    pub extensions: Option<Map<String, Value>>,
    pub document_id: Option<String>,
}

/// Why a request is not a well-formed GraphQL-over-HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// 415: the body is not JSON by its content type.
    #[error("Content-Type must be {JSON}, got {0:?}")]
    UnsupportedMediaType(String),
    /// 400.
    #[error("{0}")]
    Malformed(String),
}

/// Reads a POST body (JSON whatever the media type it will be answered in).
pub fn parse_post(content_type: &str, body: &[u8]) -> Result<Incoming, RequestError> {
    if !is_json_content_type(content_type) {
        return Err(RequestError::UnsupportedMediaType(content_type.to_owned()));
    }
    let bad = RequestError::Malformed;
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = parsed else {
        return Err(bad("request body must be a JSON object with a query".to_owned()));
    };
    let mut string = |name: &str| match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(format!("{name} must be a string, got {other}"))),
    };
    let query = string("query")?;
    let document_id = string("documentId")?;
    let operation_name = string("operationName")?;
    let variables = optional_object(fields.remove("variables"), "variables").map_err(bad)?;
    let extensions = optional_object(fields.remove("extensions"), "extensions").map_err(bad)?;
    Ok(Incoming { query, operation_name, variables, extensions, document_id })
}

/// Reads a GET request's query string.
pub fn parse_get(raw: &str) -> Result<Incoming, RequestError> {
    let mut incoming = Incoming::default();
    let (mut variables, mut extensions) = (None, None);
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "query" => incoming.query = Some(v.into_owned()),
            "documentId" if !v.is_empty() => incoming.document_id = Some(v.into_owned()),
            "operationName" if !v.is_empty() => incoming.operation_name = Some(v.into_owned()),
            "variables" if !v.is_empty() => variables = Some(v.into_owned()),
            "extensions" if !v.is_empty() => extensions = Some(v.into_owned()),
            _ => {}
        }
    }
    let parse_object =
        |text: Option<String>, what: &str| -> Result<Option<Map<String, Value>>, RequestError> {
            match text {
                None => Ok(None),
                Some(t) => {
                    let v: Value = serde_json::from_str(&t)
                        .map_err(|e| RequestError::Malformed(format!("{what} is not valid JSON: {e}")))?;
                    optional_object(Some(v), what).map_err(RequestError::Malformed)
                }
            }
        };
    incoming.variables = parse_object(variables, "variables")?;
    incoming.extensions = parse_object(extensions, "extensions")?;
    Ok(incoming)
}

fn request_error(media: MediaType, e: RequestError) -> Response {
    match e {
        RequestError::UnsupportedMediaType(_) => {
            respond(media, StatusCode::UNSUPPORTED_MEDIA_TYPE, &crate::errors::body(None, e.to_string()))
        }
        RequestError::Malformed(message) => malformed(media, message),
    }
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(media) = negotiate(&headers) else { return not_acceptable() };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    match parse_post(content_type, &body) {
        Ok(incoming) => run(&state, &headers, media, incoming, false).await,
        Err(e) => request_error(media, e),
    }
}

fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';').map(str::trim);
    if !parts.next().is_some_and(|t| t.eq_ignore_ascii_case(JSON)) {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    })
}

pub async fn get(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let Some(media) = negotiate(&headers) else { return not_acceptable() };
    match parse_get(raw.as_deref().unwrap_or("")) {
        Ok(incoming) => run(&state, &headers, media, incoming, true).await,
        Err(e) => request_error(media, e),
    }
}

/// Apollo's answer when a hash is not known: clients then resend the query with its hash.
fn persisted_query_not_found(media: MediaType) -> Response {
    let code = Code::PersistedQueryNotFound;
    let body = crate::errors::body(Some(code), "PersistedQueryNotFound");
    respond(media, status_of(code), &body)
}

/// Turns the incoming request into query text: a stored document by `documentId`, an
/// automatic persisted query by `extensions.persistedQuery.sha256Hash`, or the text itself;
/// and applies safelist mode, in which devices without a token run stored documents only.
/// A request ready to run, and the APQ text to register once it parsed and validated.
struct Resolved {
    request: GraphqlRequest,
    register: Option<(String, String)>,
}

async fn resolve_document(
    state: &AppState,
    trusted: bool,
    media: MediaType,
    incoming: Incoming,
) -> Result<Resolved, Response> {
    let snapshot = state.registry.snapshot();
    let persisted = incoming
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"))
        .and_then(|p| p.get("sha256Hash"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let mut register = None;
    let (query, stored) = match (incoming.query, incoming.document_id, persisted) {
        (None, Some(id), _) => {
            let hash = id.strip_prefix("sha256:").unwrap_or(&id).to_ascii_lowercase();
            match snapshot.document(&hash) {
                Some((text, _)) => (text.to_string(), true),
                None => return Err(persisted_query_not_found(media)),
            }
        }
        (None, None, Some(hash)) => match snapshot.document(&hash) {
            Some((text, _)) => (text.to_string(), true),
            None => match state.apq.get(&hash) {
                Some(text) if trusted || !state.safelist => (text, false),
                _ => return Err(persisted_query_not_found(media)),
            },
        },
        (Some(query), _, None) => {
            // Whether the text is a stored document matters only where safelist mode would
            // refuse it: the query's SHA-256 is computed only then.
            let stored = state.safelist
                && !trusted
                && snapshot.document(&crate::registry::sha256_hex(&[&query])).is_some();
            (query, stored)
        }
        (Some(query), _, Some(claimed)) => {
            let hash = crate::registry::sha256_hex(&[&query]);
            if claimed != hash {
                return Err(malformed(
                    media,
                    "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query",
                ));
            }
            if query.len() > super::apq::MAX_TEXT_BYTES {
                return Err(malformed(
                    media,
                    format!(
                        "a persisted query may be at most {} bytes; this one is {}",
                        super::apq::MAX_TEXT_BYTES,
                        query.len()
                    ),
                ));
            }
            if trusted || !state.safelist {
                register = Some((hash.clone(), query.clone()));
            }
            let stored = snapshot.document(&hash).is_some();
            (query, stored)
        }
        (None, None, None) => {
            return Err(malformed(media, "the request has no query, documentId or persisted query hash"));
        }
    };
    if state.safelist && !stored && !trusted {
        let code = Code::PersistedQueryNotAllowed;
        let message =
            "safelist mode: devices may run only published documents (by documentId or persisted query hash)";
        return Err(respond(media, status_of(code), &crate::errors::body(Some(code), message)));
    }
    let introspection = trusted || state.introspection;
    let request = GraphqlRequest {
        query,
        operation_name: incoming.operation_name,
        variables: incoming.variables,
        introspection,
        fetch_log: None,
    };
    Ok(Resolved { request, register })
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    media: MediaType,
    incoming: Incoming,
    over_get: bool,
) -> Response {
    // Who is asking, once: the safelist, introspection and the debug trace all read it.
    let caller = super::auth::Caller::of(state, headers).await;
    let Resolved { mut request, register } =
        match resolve_document(state, caller.trusted(), media, incoming).await {
            Ok(resolved) => resolved,
            Err(response) => return response,
        };
    let trace = super::debug::requested(state, headers, &caller, None);
    request.fetch_log = trace.as_ref().map(|t| t.log.clone());
    // Known before the request moves into the engine; used only for a query (below).
    let key = match (&state.shared_requests, &trace) {
        (Some(_), None) => Some(RequestKey {
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables: request
                .variables
                .as_ref()
                .map(|v| Value::Object(v.clone()).to_string())
                .unwrap_or_default(),
            introspection: request.introspection,
        }),
        _ => None,
    };
    let engine = state.registry.engine();
    let parsed = match engine.parse(request) {
        Ok(p) => p,
        Err(o) => return outcome(media, &o),
    };
    let kind = parsed.operation_kind();
    match kind {
        Some(OperationKind::Mutation) if over_get => {
            let body = crate::errors::body(None, "mutations are not allowed over GET; use POST");
            let mut response = respond(media, StatusCode::METHOD_NOT_ALLOWED, &body);
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        Some(OperationKind::Subscription) => {
            return outcome(media, &Answer::request_error("subscriptions are not supported over HTTP"));
        }
        _ => {}
    }
    let shared = match (&state.shared_requests, key) {
        (Some(flights), Some(key)) if kind == Some(OperationKind::Query) => Some((flights, key)),
        _ => None,
    };
    let result = match shared.map(|(flights, key)| flights.join(&key)) {
        Some(Ticket::Lead(lead)) => {
            let answer = Arc::new(engine.execute(parsed).await);
            lead.finish(answer.clone());
            answer
        }
        Some(Ticket::Follow(slot)) => {
            metrics::counter!(m::SHARED_REQUESTS).increment(1);
            match crate::flight::follow(slot).await {
                Some(answer) => answer,
                // The request it joined went away first: it runs itself.
                None => Arc::new(engine.execute(parsed).await),
            }
        }
        // Sharing off, not a query, or as many distinct queries in flight as the map holds.
        Some(Ticket::Alone) | None => Arc::new(engine.execute(parsed).await),
    };
    // Registered only once it parsed and validated (validation happens in execute).
    if let Some((hash, text)) = register
        && !result.request_error
    {
        state.apq.put(hash, text);
    }
    let Some(trace) = trace else { return outcome(media, &result) };
    let traced = Answer {
        body: super::debug::into_graphql_body(&result.body, &trace),
        request_error: result.request_error,
        error_codes: Vec::new(),
        parts: None,
    };
    let mut response = outcome(media, &traced);
    if let Some(v) = trace.header() {
        response.headers_mut().insert(super::debug::TRACE_ID_HEADER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<MediaType> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&h)
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(MediaType::Json));
        assert_eq!(accept("application/json"), Some(MediaType::Json));
        assert_eq!(accept("application/graphql-response+json"), Some(MediaType::GraphqlResponse));
        assert_eq!(
            accept("application/json, application/graphql-response+json"),
            Some(MediaType::GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json;q=0.5, application/json"),
            Some(MediaType::Json)
        );
        assert_eq!(accept("*/*"), Some(MediaType::Json));
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json; charset=iso-8859-1"), None);
    }

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(!is_json_content_type("application/json; charset=latin1"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type(""));
    }
}
