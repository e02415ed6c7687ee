//! The error catalogue: every `extensions.code` Facade sends, what it means, and the HTTP
//! status of a response in which that error is the whole answer. No code string is written
//! anywhere else; docs/resilience.md lists them all (a test keeps the two in step).
//!
//! A field error inside a GraphQL response that also carries data is HTTP 200 whatever its
//! code, as GraphQL over HTTP says; [`Code::http_status`] is for the answers that are only
//! that error (the door's 429, a failed transform's 500, safelist's 403).

/// One `extensions.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The backend's breaker is open; it was not called.
    CircuitOpen,
    /// The attempt timed out, or the request's deadline had passed.
    Timeout,
    /// Too many calls to that backend in flight; it was not called.
    BulkheadFull,
    /// A rate limit refused the call: the backend's, its own 429, or the door's.
    RateLimited,
    /// A connect error, an error status, a malformed body, or backend data that cannot be
    /// used (a key or parent value that would change a route).
    BackendError,
    /// The request's own input cannot be used: an argument that would change a route, a
    /// negative limit.
    BadUserInput,
    /// A transform or an `@js` function failed (thrown, deadline, memory).
    ScriptError,
    /// The persisted-query hash or document ID is not known (Apollo APQ's answer).
    PersistedQueryNotFound,
    /// Safelist mode: a device without a token sent a document that is not published.
    PersistedQueryNotAllowed,
    /// The request did not parse, validate or pass the operation limits; nothing ran. (GraphQL
    /// answers such errors without a code; metrics count them under this one.)
    GraphqlValidationFailed,
}

impl Code {
    pub const ALL: [Code; 10] = [
        Code::CircuitOpen,
        Code::Timeout,
        Code::BulkheadFull,
        Code::RateLimited,
        Code::BackendError,
        Code::BadUserInput,
        Code::ScriptError,
        Code::PersistedQueryNotFound,
        Code::PersistedQueryNotAllowed,
        Code::GraphqlValidationFailed,
    ];

    /// The text in `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::CircuitOpen => "CIRCUIT_OPEN",
            Code::Timeout => "TIMEOUT",
            Code::BulkheadFull => "BULKHEAD_FULL",
            Code::RateLimited => "RATE_LIMITED",
            Code::BackendError => "BACKEND_ERROR",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::ScriptError => "SCRIPT_ERROR",
            Code::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Code::PersistedQueryNotAllowed => "PERSISTED_QUERY_NOT_ALLOWED",
            Code::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
        }
    }

    /// Whether the error is the server's side failing (a backend, its policies, a script, a
    /// timeout) rather than the caller's request: only these count against a canary.
    pub fn server_side(self) -> bool {
        match self {
            Code::CircuitOpen
            | Code::Timeout
            | Code::BulkheadFull
            | Code::RateLimited
            | Code::BackendError
            | Code::ScriptError => true,
            Code::BadUserInput
            | Code::PersistedQueryNotFound
            | Code::PersistedQueryNotAllowed
            | Code::GraphqlValidationFailed => false,
        }
    }

    /// The code whose text (`extensions.code`) this is.
    pub fn of(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The HTTP status of a response whose whole answer is this error.
    pub fn http_status(self) -> u16 {
        match self {
            Code::RateLimited => 429,
            Code::ScriptError => 500,
            Code::PersistedQueryNotAllowed => 403,
            Code::BadUserInput | Code::GraphqlValidationFailed => 400,
            Code::Timeout => 504,
            Code::CircuitOpen | Code::BulkheadFull | Code::BackendError => 502,
            // Apollo's clients expect 200 and then resend the text with its hash.
            Code::PersistedQueryNotFound => 200,
        }
    }

    /// The `{"message", "extensions": {"code"}}` object of a response that is only this error.
    pub fn error_json(self, message: impl Into<String>) -> serde_json::Value {
        serde_json::json!({ "message": message.into(), "extensions": { "code": self.as_str() } })
    }
}

/// The one GraphQL error body, `{"errors": [{"message", "extensions": {"code"}}]}`, of an
/// answer that is only this error; `code` is `None` for request errors (the document did not
/// parse or validate, a malformed request), which GraphQL answers without a code.
pub fn body(code: Option<Code>, message: impl Into<String>) -> serde_json::Value {
    let error = match code {
        Some(code) => code.error_json(message),
        None => serde_json::json!({ "message": message.into() }),
    };
    serde_json::json!({ "errors": [error] })
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_screaming_snake_and_documented() {
        let docs = include_str!("../docs/resilience.md");
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
            assert!(docs.contains(&format!("`{s}`")), "docs/resilience.md does not list {s}");
            assert!((200..600).contains(&code.http_status()));
        }
    }
}
