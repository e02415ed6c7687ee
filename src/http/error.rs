//! The one place that maps errors to HTTP status codes and JSON bodies for the non-GraphQL
//! routes. (GraphQL responses follow GraphQL over HTTP instead: see `graphql.rs`.)

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::demo::DemoError;

/// The HTTP status of a response whose whole answer is one catalogued error.
pub fn status_of(code: crate::errors::Code) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// 429: the caller holds its share of something already.
    #[error("{0}")]
    TooMany(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::registry::store::StoreError> for ApiError {
    fn from(e: crate::registry::store::StoreError) -> Self {
        use crate::registry::store::StoreError as E;
        match e {
            E::NotFound(m) => ApiError::NotFound(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Invalid(m) => ApiError::BadRequest(m),
            other if other.unavailable() => {
                tracing::warn!(error = %other, "registry store unavailable");
                ApiError::Unavailable(format!("registry unavailable: {other}; try again shortly"))
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal("the registry store failed; see the server log".into())
            }
        }
    }
}

impl From<DemoError> for ApiError {
    fn from(e: DemoError) -> Self {
        match e {
            DemoError::UnknownBackend(_) => ApiError::NotFound(e.to_string()),
            DemoError::BadFaults(_) => ApiError::BadRequest(e.to_string()),
            DemoError::Bind { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("2"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
