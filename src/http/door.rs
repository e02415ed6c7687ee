//! Limits at the door: requests per second per client and per device, checked before any
//! work, answered with 429 and `Retry-After`. Keyed limiters hold one small cell per key
//! seen recently; `housekeep` (every 10 s) drops keys whose limits have refilled, so memory
//! stays bounded by the keys active in the last few seconds, however many devices there are.

use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::errors::Code;
use crate::telemetry::metrics as m;

/// Header naming the client (device family) of a `/graphql` request.
pub const CLIENT_HEADER: &str = "x-facade-client";
/// Header carrying a stable device ID.
pub const DEVICE_HEADER: &str = "x-device-id";

type Keyed<C> = RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    C,
    governor::middleware::NoOpMiddleware<<C as Clock>::Instant>,
>;

pub struct Door<C: Clock + Clone = DefaultClock> {
    clients: Keyed<C>,
    devices: Keyed<C>,
    clock: C,
    /// Whether `/v1/{client}/{endpoint}` names a published endpoint: calls to unknown ones
    /// are charged to a budget of their own (`{client}/?`), so a flood of them cannot spend a
    /// client's budget and refuse its real devices (probe 2, M4).
    known: Option<Known>,
}

/// See [`Door::known`](Door).
pub type Known = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

#[derive(Debug, Clone, Copy)]
pub struct DoorLimits {
    pub client_rate: u32,
    pub client_burst: u32,
    pub device_rate: u32,
    pub device_burst: u32,
}

fn quota(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

/// Which limit refused a request, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
    pub retry_after: Duration,
}

impl<C: Clock + Clone> Door<C> {
    pub fn with_clock(limits: DoorLimits, clock: C) -> Self {
        Self {
            clients: RateLimiter::new(
                quota(limits.client_rate, limits.client_burst),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            devices: RateLimiter::new(
                quota(limits.device_rate, limits.device_burst),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            clock,
            known: None,
        }
    }

    /// Tells the door which endpoints exist (see [`Known`]).
    pub fn knowing(mut self, known: Known) -> Self {
        self.known = Some(known);
        self
    }

    /// Whom a request is counted under: the client in a `/v1/{client}/{endpoint}` path (a
    /// header cannot move a call into another client's bucket) — `{client}/?` when that
    /// endpoint is unknown — else `X-Facade-Client`, else `anonymous`; and the device ID,
    /// whatever bytes it holds (a non-UTF-8 ID is limited like any other).
    fn keys(&self, path: &str, headers: &axum::http::HeaderMap) -> (String, Option<String>) {
        let (client, device) = keys(path, headers);
        let unknown = path
            .strip_prefix("/v1/")
            .and_then(|rest| rest.split_once('/'))
            .zip(self.known.as_ref())
            .is_some_and(|((c, e), known)| !known(c, e));
        (if unknown { format!("{client}/?") } else { client }, device)
    }

    pub fn check(&self, client: &str, device: Option<&str>) -> Result<(), Refused> {
        let refused = |reason, not_until: governor::NotUntil<C::Instant>| Refused {
            reason,
            retry_after: not_until.wait_time_from(self.clock.now()),
        };
        self.clients.check_key(&client.to_owned()).map_err(|n| refused("door_client", n))?;
        if let Some(device) = device {
            self.devices.check_key(&device.to_owned()).map_err(|n| refused("door_device", n))?;
        }
        Ok(())
    }

    /// Forgets keys whose limits have fully refilled.
    pub fn housekeep(&self) {
        for limiter in [&self.clients, &self.devices] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys currently tracked (clients + devices).
    pub fn tracked(&self) -> usize {
        self.clients.len() + self.devices.len()
    }
}

impl Door {
    pub fn new(limits: DoorLimits, known: Known) -> Arc<Self> {
        let door = Arc::new(Self::with_clock(limits, DefaultClock::default()).knowing(known));
        spawn_housekeeping(Arc::downgrade(&door));
        door
    }
}

/// Every 10 s until the door is dropped.
fn spawn_housekeeping(door: Weak<Door>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        every.tick().await;
        loop {
            every.tick().await;
            let Some(door) = door.upgrade() else { return };
            door.housekeep();
        }
    });
}

/// The client and device of a request, before the door knows whether its endpoint exists.
fn keys(path: &str, headers: &axum::http::HeaderMap) -> (String, Option<String>) {
    let header = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let from_path =
        path.strip_prefix("/v1/").and_then(|rest| rest.split('/').next()).filter(|c| !c.is_empty());
    let client = from_path
        .map(str::to_owned)
        .or_else(|| header(CLIENT_HEADER))
        .unwrap_or_else(|| "anonymous".to_owned());
    (client, header(DEVICE_HEADER))
}

/// The middleware: 429 with `Retry-After` (whole seconds, at least 1) when over a limit.
pub async fn guard(State(door): State<Arc<Door>>, request: Request, next: Next) -> Response {
    let (client, device) = door.keys(request.uri().path(), request.headers());
    match door.check(&client, device.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            metrics::counter!(m::REJECTIONS, "backend" => "", "reason" => refused.reason).increment(1);
            let secs = refused.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let who = if refused.reason == "door_client" { "client" } else { "device" };
            let code = Code::RateLimited;
            let body = crate::errors::body(
                Some(code),
                format!("too many requests from this {who}; retry after {secs} s"),
            );
            let mut response = (super::error::status_of(code), axum::Json(body)).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits() -> DoorLimits {
        DoorLimits { client_rate: 1000, client_burst: 1000, device_rate: 1, device_burst: 2 }
    }

    #[test]
    fn a_flood_of_unknown_endpoints_does_not_spend_the_clients_budget() {
        let limits = DoorLimits { client_rate: 1, client_burst: 100, device_rate: 1000, device_burst: 1000 };
        let known: Known = Arc::new(|c, e| (c, e) == ("tv", "home"));
        let door = Door::with_clock(limits, FakeRelativeClock::default()).knowing(known);
        let none = axum::http::HeaderMap::new();
        let flood = (0..1000).filter(|i| {
            let (client, device) = door.keys(&format!("/v1/tv/nope{i}"), &none);
            door.check(&client, device.as_deref()).is_ok()
        });
        assert_eq!(flood.count(), 100, "unknown endpoints have a budget of their own, and it runs out");
        for _ in 0..100 {
            let (client, device) = door.keys("/v1/tv/home", &none);
            assert_eq!(client, "tv");
            assert!(door.check(&client, device.as_deref()).is_ok(), "real tv calls are not refused");
        }
        assert!(door.check("tv", None).is_err(), "the real budget is the client's own");
    }

    #[test]
    fn requests_are_counted_under_the_paths_client_and_any_device_id() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(CLIENT_HEADER, "web".parse().unwrap());
        h.insert(DEVICE_HEADER, axum::http::HeaderValue::from_bytes(b"id-\xff").unwrap());
        let (client, device) = keys("/v1/tv/home", &h);
        assert_eq!((client.as_str(), device.as_deref()), ("tv", Some("id-\u{fffd}")));
        assert_eq!(keys("/graphql", &h).0, "web");
        assert_eq!(keys("/graphql", &axum::http::HeaderMap::new()), ("anonymous".to_owned(), None));
    }

    #[test]
    fn a_device_gets_its_burst_then_a_retry_after() {
        let clock = FakeRelativeClock::default();
        let door = Door::with_clock(limits(), clock.clone());
        assert!(door.check("tv", Some("d1")).is_ok());
        assert!(door.check("tv", Some("d1")).is_ok());
        let refused = door.check("tv", Some("d1")).unwrap_err();
        assert_eq!(refused.reason, "door_device");
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1));
        assert!(door.check("tv", Some("d2")).is_ok(), "another device is not affected");
        clock.advance(Duration::from_secs(1));
        assert!(door.check("tv", Some("d1")).is_ok());
    }

    #[test]
    fn memory_stays_bounded_over_100_000_devices() {
        let clock = FakeRelativeClock::default();
        let door = Door::with_clock(limits(), clock.clone());
        for round in 0..4 {
            for i in 0..25_000 {
                let _ = door.check("tv", Some(&format!("device-{round}-{i}")));
            }
            // Limits refill within 2 s (burst 2 at 1/s); housekeeping then forgets the keys.
            clock.advance(Duration::from_secs(3));
            door.housekeep();
            assert!(door.tracked() <= 1, "round {round}: {} keys kept", door.tracked());
        }
    }
}
