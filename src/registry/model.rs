//! The registry's vocabulary. Names are parsed at the edge (`ClientName::parse`…), so an
//! invalid name cannot reach the store.

use serde::{Deserialize, Serialize};
use serde_json::Value;

fn parse_name(kind: &str, raw: &str, max: usize) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= max
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "bad {kind} {raw:?}: 1 to {max} characters, lower-case letters, digits, '-' or '_', starting with a letter"
        ))
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, String> {
                parse_name($kind, raw, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A device family such as `tv`, `ios` or `web`.
    ClientName,
    "client name",
    32
);
name_type!(
    /// An endpoint's name within its client, such as `home`.
    EndpointName,
    "endpoint name",
    64
);
name_type!(
    /// The team that owns clients.
    TeamName,
    "team name",
    64
);

/// Who is calling the admin API. Tokens themselves are never kept, only their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin { label: String },
    Team { team: String, label: String },
}

impl Principal {
    /// How the audit log names the actor (never the token).
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin { label } => format!("admin:{label}"),
            Principal::Team { team, label } => format!("team:{team}:{label}"),
        }
    }

    pub fn may_manage(&self, team: &str) -> bool {
        match self {
            Principal::Admin { .. } => true,
            Principal::Team { team: t, .. } => t == team,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin { .. })
    }
}

/// One immutable version of an endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    pub client: String,
    pub endpoint: String,
    pub version: i64,
    pub document: String,
    pub operation_name: Option<String>,
    pub script: Option<String>,
    /// SHA-256 of the whole version (document, operation name, script).
    pub sha256: String,
    /// SHA-256 of the document text alone: its ID for persisted queries.
    pub document_sha256: String,
    pub author: String,
    pub created_ms: i64,
    /// The variables the version was published with for its trial run, if any (the
    /// playground starts a run of this version with them).
    pub sample_variables: Option<serde_json::Value>,
}

/// Which versions of an endpoint devices get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub stable: i64,
    pub canary: Option<i64>,
    pub canary_percent: i64,
    pub previous_stable: Option<i64>,
}

/// A change to a rollout, as a pure function of the current one: the store applies it inside
/// the transaction that also checks the versions exist and writes the audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutChange {
    /// Set the stable version and an optional canary with its share of devices (0–100).
    Set { stable: i64, canary: Option<i64>, canary_percent: i64 },
    /// The canary becomes the stable version.
    Promote,
    /// Drop the canary if there is one; otherwise return to the previous stable version.
    Rollback,
}

/// Why a rollout change cannot be made: bad input (400) or not in this state (409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

impl RolloutChange {
    /// The audit log's name for it.
    pub fn action(&self) -> &'static str {
        match self {
            RolloutChange::Set { .. } => "rollout.set",
            RolloutChange::Promote => "rollout.promote",
            RolloutChange::Rollback => "rollout.rollback",
        }
    }

    /// The rollout after this change; `target` names the endpoint in errors.
    pub fn apply(&self, target: &str, cur: Rollout) -> Result<Rollout, RolloutError> {
        match *self {
            RolloutChange::Set { stable, canary, canary_percent } => {
                if !(0..=100).contains(&canary_percent) {
                    return Err(RolloutError::Invalid(format!(
                        "canaryPercent must be between 0 and 100, got {canary_percent}"
                    )));
                }
                if canary.is_none() && canary_percent != 0 {
                    return Err(RolloutError::Invalid("canaryPercent needs a canary version".into()));
                }
                let previous_stable =
                    if cur.stable != stable { Some(cur.stable) } else { cur.previous_stable };
                Ok(Rollout { stable, canary, canary_percent, previous_stable })
            }
            RolloutChange::Promote => {
                let canary = cur
                    .canary
                    .ok_or_else(|| RolloutError::Conflict(format!("{target} has no canary to promote")))?;
                Ok(Rollout {
                    stable: canary,
                    canary: None,
                    canary_percent: 0,
                    previous_stable: Some(cur.stable),
                })
            }
            RolloutChange::Rollback => {
                if cur.canary.is_some() {
                    return Ok(Rollout { canary: None, canary_percent: 0, ..cur });
                }
                let previous = cur.previous_stable.ok_or_else(|| {
                    RolloutError::Conflict(format!("{target} has no canary and no previous stable version"))
                })?;
                Ok(Rollout { stable: previous, canary: None, canary_percent: 0, previous_stable: None })
            }
        }
    }
}

/// A stored token as the token list shows it: never the token, never its hash.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub id: i64,
    pub kind: String,
    pub team: Option<String>,
    pub label: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// Checks a free-text label or reason: at most `max` characters, no control characters (which
/// would rewrite a terminal or a log line when shown), no bidirectional controls (which make
/// a label read as another, U+202E) and no line or paragraph separators (U+2028, U+2029).
pub fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.chars().count() > max {
        return Err(format!("{what}: at most {max} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{what}: control characters (newlines, escapes, NUL) are not allowed"));
    }
    let reorders = |c: char| matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if let Some(c) = text.chars().find(|&c| reorders(c) || matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err(format!(
            "{what}: U+{:04X} is not allowed (bidirectional controls and line separators change how the text reads)",
            u32::from(c)
        ));
    }
    Ok(())
}

/// [`check_text`] for a label, which must also say something (not empty nor only spaces).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.trim().is_empty() {
        return Err("label: must not be empty".to_owned());
    }
    check_text("label", label, 100)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    pub reason: Option<String>,
}

/// When a canary is rolled back. Defaults on; set per rollout in `PUT …/rollout` (`guard`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CanaryGuard {
    pub enabled: bool,
    /// Seconds of calls compared (at most 59).
    pub window_secs: u32,
    /// Calls each side needs in the window before anything is judged.
    pub min_requests: u32,
    /// Roll back when the canary's error rate exceeds stable's by more than this many
    /// percentage points.
    pub max_error_rate_increase_pct: f64,
    /// … or when the canary's p99 exceeds stable's times this,
    pub max_p99_ratio: f64,
    /// … and by at least this many milliseconds (so sub-millisecond noise never decides).
    pub min_p99_increase_ms: f64,
}

impl Default for CanaryGuard {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 30,
            min_requests: 50,
            max_error_rate_increase_pct: 5.0,
            max_p99_ratio: 2.0,
            min_p99_increase_ms: 50.0,
        }
    }
}

impl CanaryGuard {
    /// Every number out of its range, named as the API names it.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(5..=59).contains(&self.window_secs) {
            problems.push(format!("guard.windowSecs must be 5 to 59, got {}", self.window_secs));
        }
        if !(1..=1_000_000).contains(&self.min_requests) {
            problems.push(format!("guard.minRequests must be 1 to 1000000, got {}", self.min_requests));
        }
        if !(0.0..=100.0).contains(&self.max_error_rate_increase_pct) {
            problems.push(format!(
                "guard.maxErrorRateIncreasePct must be 0 to 100, got {}",
                self.max_error_rate_increase_pct
            ));
        }
        if !(self.max_p99_ratio >= 1.0 && self.max_p99_ratio.is_finite()) {
            problems.push(format!("guard.maxP99Ratio must be at least 1, got {}", self.max_p99_ratio));
        }
        if !(self.min_p99_increase_ms >= 0.0 && self.min_p99_increase_ms.is_finite()) {
            problems
                .push(format!("guard.minP99IncreaseMs must be 0 or more, got {}", self.min_p99_increase_ms));
        }
        problems
    }
}

/// A change to a guard: the fields given replace the current ones (`PUT …/rollout`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryGuardPatch {
    pub enabled: Option<bool>,
    pub window_secs: Option<u32>,
    pub min_requests: Option<u32>,
    pub max_error_rate_increase_pct: Option<f64>,
    pub max_p99_ratio: Option<f64>,
    pub min_p99_increase_ms: Option<f64>,
}

impl CanaryGuardPatch {
    pub fn apply(self, g: CanaryGuard) -> CanaryGuard {
        CanaryGuard {
            enabled: self.enabled.unwrap_or(g.enabled),
            window_secs: self.window_secs.unwrap_or(g.window_secs),
            min_requests: self.min_requests.unwrap_or(g.min_requests),
            max_error_rate_increase_pct: self
                .max_error_rate_increase_pct
                .unwrap_or(g.max_error_rate_increase_pct),
            max_p99_ratio: self.max_p99_ratio.unwrap_or(g.max_p99_ratio),
            min_p99_increase_ms: self.min_p99_increase_ms.unwrap_or(g.min_p99_increase_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_refuse_what_changes_how_they_read() {
        assert!(check_label("tv ci").is_ok());
        assert!(check_label("équipe télé").is_ok());
        for bad in ["", "  ", "a\u{202E}b", "a\u{2028}b", "a\u{2029}b", "\u{2066}x", "a\nb", "a\u{1b}[31m"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
        assert!(check_text("reason", "", 10).is_ok(), "an empty reason is no reason");
    }

    #[test]
    fn names_are_checked_at_the_edge() {
        assert!(ClientName::parse("tv").is_ok());
        assert!(EndpointName::parse("home-v2_b").is_ok());
        for bad in ["", "TV", "1tv", "tv/home", "a b", &"x".repeat(33)] {
            assert!(ClientName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ClientName::parse("Tv").unwrap_err().contains("lower-case"));
    }

    #[test]
    fn team_tokens_manage_only_their_team() {
        let t = Principal::Team { team: "tv-team".into(), label: "ci".into() };
        assert!(t.may_manage("tv-team") && !t.may_manage("ios-team") && !t.is_admin());
        assert!(Principal::Admin { label: "root".into() }.may_manage("anything"));
        assert_eq!(t.actor(), "team:tv-team:ci");
    }

    const AT_2: Rollout = Rollout { stable: 2, canary: None, canary_percent: 0, previous_stable: Some(1) };

    #[test]
    fn rollout_transitions() {
        let set = RolloutChange::Set { stable: 2, canary: Some(3), canary_percent: 10 };
        let canary = set.apply("tv/home", AT_2).unwrap();
        assert_eq!(
            canary,
            Rollout { stable: 2, canary: Some(3), canary_percent: 10, previous_stable: Some(1) }
        );
        let promoted = RolloutChange::Promote.apply("tv/home", canary).unwrap();
        assert_eq!(
            promoted,
            Rollout { stable: 3, canary: None, canary_percent: 0, previous_stable: Some(2) }
        );
        let dropped = RolloutChange::Rollback.apply("tv/home", canary).unwrap();
        assert_eq!(dropped, Rollout { canary: None, canary_percent: 0, ..canary });
        let back = RolloutChange::Rollback.apply("tv/home", promoted).unwrap();
        assert_eq!(back, Rollout { stable: 2, canary: None, canary_percent: 0, previous_stable: None });
        assert!(matches!(RolloutChange::Rollback.apply("tv/home", back), Err(RolloutError::Conflict(_))));
        let e = RolloutChange::Promote.apply("tv/home", AT_2).unwrap_err();
        assert!(matches!(&e, RolloutError::Conflict(m) if m.contains("tv/home")), "{e}");
        let moved =
            RolloutChange::Set { stable: 5, canary: None, canary_percent: 0 }.apply("tv/home", AT_2).unwrap();
        assert_eq!(moved.previous_stable, Some(2), "a new stable remembers the old one");
        for bad in [
            RolloutChange::Set { stable: 2, canary: Some(3), canary_percent: 101 },
            RolloutChange::Set { stable: 2, canary: None, canary_percent: 5 },
        ] {
            assert!(matches!(bad.apply("tv/home", AT_2), Err(RolloutError::Invalid(_))), "{bad:?}");
        }
    }
}
