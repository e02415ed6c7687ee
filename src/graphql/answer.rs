//! What running an operation gives back: the response body as bytes, whether it is a request
//! error, the field errors' codes, and where `data` and `errors` sit in the body.

use async_graphql::ServerError;
use serde_json::json;

use super::project;

/// The JSON body of a GraphQL response, and whether it is a request error (no execution
/// happened: the document did not parse or validate), which GraphQL over HTTP answers with 400.
#[derive(Debug)]
pub struct Answer {
    /// The serialized JSON body.
    pub body: bytes::Bytes,
    pub request_error: bool,
    /// The `extensions.code` of each field error (for metrics), without parsing the body.
    pub error_codes: Vec<&'static str>,
    /// Where `data` and `errors` sit in `body`, when the projection wrote it (a transform
    /// takes them from there without parsing the body).
    pub parts: Option<project::Parts>,
}

impl Answer {
    pub(super) fn request_errors(errors: Vec<ServerError>) -> Self {
        Self {
            body: json!({ "errors": errors }).to_string().into(),
            request_error: true,
            error_codes: Vec::new(),
            parts: None,
        }
    }

    /// A request error with one message.
    pub fn request_error(message: &str) -> Self {
        Self::request_errors(vec![ServerError::new(message, None)])
    }
}
