//! `/graphql` per the GraphQL-over-HTTP spec: POST with JSON, GET for queries only, content
//! negotiation between `application/graphql-response+json` and `application/json`, and the
//! spec's status codes (400 for request errors under the new media type, 405 for a mutation
//! over GET, 406 for an unacceptable Accept, 415 for a body that is not JSON).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use crate::graphql::{GraphqlRequest, OperationKind, Outcome};

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
    respond(media, StatusCode::BAD_REQUEST, &json!({ "errors": [{ "message": message.into() }] }))
}

fn not_acceptable() -> Response {
    let body =
        json!({ "errors": [{ "message": format!("Accept must allow {GRAPHQL_RESPONSE_JSON} or {JSON}") }] });
    respond(MediaType::Json, StatusCode::NOT_ACCEPTABLE, &body)
}

fn outcome(media: MediaType, outcome: Outcome) -> Response {
    let status = if outcome.request_error && media == MediaType::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    respond_bytes(media, status, outcome.body)
}

/// Reads an optional JSON object (variables, extensions) that may also be null.
fn optional_object(value: Option<Value>, what: &str) -> Result<Option<Map<String, Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(format!("{what} must be a JSON object, got {other}")),
    }
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(media) = negotiate(&headers) else { return not_acceptable() };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_json_content_type(content_type) {
        let body = json!({ "errors": [{ "message": format!("Content-Type must be {JSON}, got {content_type:?}") }] });
        return respond(media, StatusCode::UNSUPPORTED_MEDIA_TYPE, &body);
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return malformed(media, format!("request body is not valid JSON: {e}")),
    };
    let Value::Object(mut fields) = parsed else {
        return malformed(media, "request body must be a JSON object with a query");
    };
    let query = match fields.remove("query") {
        Some(Value::String(q)) => q,
        Some(other) => return malformed(media, format!("query must be a string, got {other}")),
        None => return malformed(media, "request body has no query"),
    };
    let operation_name = match fields.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return malformed(media, format!("operationName must be a string, got {other}")),
    };
    let variables = match optional_object(fields.remove("variables"), "variables") {
        Ok(v) => v,
        Err(e) => return malformed(media, e),
    };
    if let Err(e) = optional_object(fields.remove("extensions"), "extensions") {
        return malformed(media, e);
    }
    run(&state, media, GraphqlRequest { query, operation_name, variables }, false).await
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
    let mut query = None;
    let mut operation_name = None;
    let mut variables = None;
    let mut extensions = None;
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "query" => query = Some(v.into_owned()),
            "operationName" if !v.is_empty() => operation_name = Some(v.into_owned()),
            "variables" if !v.is_empty() => variables = Some(v.into_owned()),
            "extensions" if !v.is_empty() => extensions = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(query) = query else { return malformed(media, "the query string has no query parameter") };
    let parse_object = |text: Option<String>, what: &str| -> Result<Option<Map<String, Value>>, String> {
        match text {
            None => Ok(None),
            Some(t) => {
                let v: Value =
                    serde_json::from_str(&t).map_err(|e| format!("{what} is not valid JSON: {e}"))?;
                optional_object(Some(v), what)
            }
        }
    };
    let variables = match parse_object(variables, "variables") {
        Ok(v) => v,
        Err(e) => return malformed(media, e),
    };
    if let Err(e) = parse_object(extensions, "extensions") {
        return malformed(media, e);
    }
    run(&state, media, GraphqlRequest { query, operation_name, variables }, true).await
}

async fn run(state: &AppState, media: MediaType, request: GraphqlRequest, over_get: bool) -> Response {
    let engine = state.engine.clone();
    let parsed = match engine.parse(request) {
        Ok(p) => p,
        Err(o) => return outcome(media, o),
    };
    match parsed.operation_kind() {
        Some(OperationKind::Mutation) if over_get => {
            let body = json!({ "errors": [{ "message": "mutations are not allowed over GET; use POST" }] });
            let mut response = respond(media, StatusCode::METHOD_NOT_ALLOWED, &body);
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        Some(OperationKind::Subscription) => {
            return outcome(media, Outcome::request_error("subscriptions are not supported over HTTP"));
        }
        _ => {}
    }
    outcome(media, engine.execute(parsed).await)
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
