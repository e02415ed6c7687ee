//! One request's waterfall: a request with `x-facade-debug: 1` and a valid admin or team
//! token gets, beside its answer, every backend call it made (backend, method, route, keys,
//! start, duration, outcome) and its trace ID. Devices without a token never see it, and a
//! team sees it on device calls of its own clients only.

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::AppState;
use crate::backends::FetchLog;

pub const DEBUG_HEADER: &str = "x-facade-debug";
pub const TRACE_ID_HEADER: &str = "x-facade-trace-id";

/// A request whose calls are being recorded.
pub struct DebugTrace {
    pub trace_id: String,
    pub log: FetchLog,
}

impl DebugTrace {
    /// `{"traceId", "fetches": [...]}`.
    pub fn to_json(&self) -> Value {
        json!({ "traceId": self.trace_id, "fetches": self.log.records() })
    }

    pub fn header(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.trace_id).ok()
    }
}

/// A trace for this request if it asked for one with a valid token; for a device call of
/// `client`'s endpoint, a token that may manage that client (another team's waterfall is not
/// shown, probe 2 L1).
pub fn requested(
    state: &AppState,
    headers: &HeaderMap,
    caller: &super::auth::Caller,
    client: Option<&str>,
) -> Option<DebugTrace> {
    if headers.get(DEBUG_HEADER).is_none_or(|v| v.as_bytes() != b"1") {
        return None;
    }
    let who = caller.principal()?;
    if let Some(client) = client {
        let snapshot = state.registry.snapshot();
        if !snapshot.client_team(client).is_some_and(|team| who.may_manage(team)) {
            return None;
        }
    }
    // With traces on, the ID of this request's trace (which a collector has); otherwise the
    // caller's or a new one.
    let id = crate::telemetry::otel::current_trace_id().unwrap_or_else(|| trace_id(headers));
    Some(DebugTrace { trace_id: id, log: FetchLog::default() })
}

/// The trace ID of a W3C `traceparent` the caller sent, else a new random one.
fn trace_id(headers: &HeaderMap) -> String {
    let from_parent = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| {
        let mut parts = v.split('-');
        let (_version, id) = (parts.next()?, parts.next()?);
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
            .then(|| id.to_ascii_lowercase())
    });
    from_parent.unwrap_or_else(|| {
        let mut bytes = [0u8; 16];
        let _ = getrandom::fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Adds `extensions.facade` with the trace to a GraphQL response body.
pub fn into_graphql_body(body: &[u8], trace: &DebugTrace) -> bytes::Bytes {
    let mut value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        let extensions = map.entry("extensions").or_insert_with(|| json!({}));
        if let Value::Object(ext) = extensions {
            ext.insert("facade".to_owned(), trace.to_json());
        }
    }
    value.to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_traceparent_or_are_new() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".parse().unwrap());
        assert_eq!(trace_id(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
        h.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        let fresh = trace_id(&h);
        assert!(fresh.len() == 32 && fresh != "0".repeat(32), "{fresh}");
        assert_ne!(trace_id(&HeaderMap::new()), trace_id(&HeaderMap::new()));
    }
}
