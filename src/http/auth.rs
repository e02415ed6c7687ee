//! Bearer-token authentication for the admin API and for requests that carry a token
//! (introspection, safelist): hashing, the config's admin hashes, the store's tokens, and the
//! middleware that puts the [`Principal`] in the request.
//!
//! Tokens are never stored: the store keeps their SHA-256 (`facade token create`), and config
//! may list more admin hashes (`[admin] token_sha256`, `facade token new`). A presented token
//! is hashed and compared.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::registry::model::Principal;
use crate::registry::store::{StoreError, bounded};

/// SHA-256 of a token, lower-case hex.
pub fn token_hash(token: &str) -> String {
    crate::registry::sha256_hex(&[token])
}

/// A new random admin token (256 bits) and its hash.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = format!("fcd_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let hash = token_hash(&token);
    Ok((token, hash))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Admin token hashes from config (bootstrap and break-glass); the store holds the others.
#[derive(Clone, Default)]
pub struct AdminTokens(pub Arc<Vec<String>>);

/// The bearer token of a request, if any (the scheme is case-insensitive, RFC 7235).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim_start();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Who sent a request, resolved once per request ([`Caller::of`]): a device (no token: no
/// lookup at all), a valid token's principal, or a token that is not valid (or could not be
/// checked), which is trusted with nothing.
#[derive(Debug, Clone)]
pub enum Caller {
    Device,
    Token(Principal),
    Untrusted,
}

impl Caller {
    pub async fn of(state: &AppState, headers: &axum::http::HeaderMap) -> Caller {
        match bearer(headers) {
            None => Caller::Device,
            Some(token) => match principal(state, token).await {
                Ok(Some(who)) => Caller::Token(who),
                _ => Caller::Untrusted,
            },
        }
    }

    /// The principal of a valid token.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Token(who) => Some(who),
            _ => None,
        }
    }

    /// Whether the request carries a valid admin or team token.
    pub fn trusted(&self) -> bool {
        matches!(self, Caller::Token(_))
    }
}

/// Who a token belongs to: an admin token from config, or a token from the store (through
/// [`TokenCache`]).
pub async fn principal(state: &AppState, token: &str) -> Result<Option<Principal>, ApiError> {
    principal_of_hash(state, &token_hash(token)).await
}

/// [`principal`] by the token's hash (what a long-lived request keeps instead of the token).
pub async fn principal_of_hash(state: &AppState, hash: &str) -> Result<Option<Principal>, ApiError> {
    if state.admin_tokens.0.iter().any(|h| constant_time_eq(h.as_bytes(), hash.as_bytes())) {
        return Ok(Some(Principal::Admin { label: "config".into() }));
    }
    state.tokens.principal(hash, || state.registry.store().principal(hash)).await
}

/// How long a token's answer from the store is used without asking again: a token revoked
/// (or expired) on another instance stops working within this. Revoking on this instance
/// empties the cache at once.
pub const TOKEN_FRESH: Duration = Duration::from_secs(10);
/// While the store is unreachable, a token seen within this keeps its last answer (nothing
/// can be revoked in an unreachable store meanwhile); one not seen answers 503.
pub const TOKEN_STALE_MAX: Duration = Duration::from_secs(300);
/// Tokens remembered at most (least recently used forgotten first).
const TOKEN_CACHE_SIZE: usize = 10_000;

/// Token answers from the store, by token hash, so a request with a token costs no query
/// while the answer is fresh, and a registry outage does not lock token holders out.
/// Only valid tokens are kept (an unknown token is asked each time).
pub struct TokenCache {
    seen: Mutex<lru::LruCache<String, (Principal, Instant)>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        let size = std::num::NonZeroUsize::new(TOKEN_CACHE_SIZE).unwrap_or(std::num::NonZeroUsize::MIN);
        Self { seen: Mutex::new(lru::LruCache::new(size)) }
    }
}

impl TokenCache {
    /// The principal of a token hash: fresh from the cache, else from `lookup` (bounded in
    /// time); with the store unreachable, a stale answer not older than [`TOKEN_STALE_MAX`].
    pub async fn principal<F>(
        &self,
        hash: &str,
        lookup: impl FnOnce() -> F,
    ) -> Result<Option<Principal>, ApiError>
    where
        F: Future<Output = Result<Option<Principal>, StoreError>>,
    {
        let cached = self.lock().get(hash).cloned();
        if let Some((p, at)) = &cached
            && at.elapsed() < TOKEN_FRESH
        {
            return Ok(Some(p.clone()));
        }
        match bounded(lookup()).await {
            Ok(Some(p)) => {
                self.lock().put(hash.to_owned(), (p.clone(), Instant::now()));
                Ok(Some(p))
            }
            Ok(None) => {
                self.lock().pop(hash);
                Ok(None)
            }
            Err(e) if e.unavailable() => match cached {
                Some((p, at)) if at.elapsed() < TOKEN_STALE_MAX => {
                    tracing::warn!(error = %e, "registry unavailable: a token's last known answer is used");
                    Ok(Some(p))
                }
                _ => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets every answer (a token was revoked here).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, (Principal, Instant)>> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// 401 without a valid `Authorization: Bearer` token; puts the [`Principal`] in the request's
/// extensions for the handlers to authorize. The token is never logged nor echoed.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = bearer(request.headers()) else {
        return Err(ApiError::Unauthorized("missing bearer token".into()));
    };
    let Some(principal) = principal(&state, token).await? else {
        return Err(ApiError::Unauthorized("invalid token".into()));
    };
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

pub fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.is_admin() { Ok(()) } else { Err(ApiError::Forbidden("this needs an admin token".into())) }
}

/// Who the token is, so the page offers only what it may do.
pub async fn me(axum::Extension(who): axum::Extension<Principal>) -> axum::Json<serde_json::Value> {
    axum::Json(match &who {
        Principal::Admin { label } => serde_json::json!({ "kind": "admin", "label": label }),
        Principal::Team { team, label } => {
            serde_json::json!({ "kind": "team", "team": team, "label": label })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_and_compare() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("fcd_") && token.len() == 68);
        assert_eq!(token_hash(&token), hash);
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac") && !constant_time_eq(b"ab", b"abc"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            bearer(&h).map(str::to_owned)
        };
        for v in ["Bearer fcd_1", "bearer fcd_1", "BEARER  fcd_1 "] {
            assert_eq!(with(v).as_deref(), Some("fcd_1"), "{v}");
        }
        assert_eq!(with("Basic fcd_1"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(with("Bearerfcd_1"), None);
    }
}
