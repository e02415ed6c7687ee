//! Every metric name in one place, and the Prometheus recorder behind `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Backend calls by `backend` and `outcome` (`ok`, or the error code in lower case).
pub const BACKEND_CALLS: &str = "facade_backend_calls_total";
/// Latency of backend calls that reached the backend, by `backend`, in seconds.
pub const BACKEND_LATENCY: &str = "facade_backend_request_duration_seconds";
/// Calls refused before reaching a backend or the engine, by `reason`
/// (`circuit_open`, `bulkhead_full`, `rate_limited`, `door_client`, `door_device`).
pub const REJECTIONS: &str = "facade_rejections_total";
/// Breaker state per `backend`: 1 for the current `state` (closed, open, half_open), 0 else.
pub const BREAKER_STATE: &str = "facade_breaker_state";
/// Reads answered by an identical read another request had in flight, by `backend`: calls
/// not made (`shareInFlight`).
pub const SHARED_CALLS: &str = "facade_backend_shared_calls_total";
/// `/graphql` queries answered by an identical query another request had in flight
/// (`[graphql] share_identical_requests`).
pub const SHARED_REQUESTS: &str = "facade_shared_requests_total";
/// Retries made, by `backend`.
pub const RETRIES: &str = "facade_backend_retries_total";
/// Script calls that failed, by `script` and `kind` (thrown, deadline, out_of_memory, …).
pub const SCRIPT_ERRORS: &str = "facade_script_errors_total";
/// QuickJS runtimes replaced after an interrupted or out-of-memory call.
pub const SCRIPT_WORKERS_REPLACED: &str = "facade_script_workers_replaced_total";

/// Device calls by endpoint ID, by `client`, `endpoint`, `version` and `side` (`stable` or
/// `canary`). Per client: sum by `client`.
pub const ENDPOINT_REQUESTS: &str = "facade_endpoint_requests_total";
/// Errors in those calls' answers, by the same labels and `code` (`extensions.code`; one per
/// error, so a call can count several).
pub const ENDPOINT_ERRORS: &str = "facade_endpoint_errors_total";
/// Time to answer those calls (execution and transform), by the same labels, in seconds.
pub const ENDPOINT_LATENCY: &str = "facade_endpoint_request_duration_seconds";

/// Schema reloads and publishes, by `result` (`applied`, `unchanged`, `refused`, `forced`).
pub const SCHEMA_RELOADS: &str = "facade_schema_reloads_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle. `None` if
/// another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(BACKEND_LATENCY.to_owned()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(ENDPOINT_LATENCY.to_owned()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            spawn_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The upkeep thread's name (as `ps -L` shows it).
const UPKEEP_THREAD: &str = "facade-metrics";

/// Starts the thread that folds histogram samples into buckets every [`UPKEEP_EVERY`]. The
/// recorder keeps each sample until then (or until `/metrics` is read): without it, a server
/// nobody scrapes grew by every backend call's latency sample, ~120 bytes per home query
/// (docs/benchmarks-history.md §21). A thread, not a task: the recorder outlives any one runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name(UPKEEP_THREAD.to_owned()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histogram samples are folded only when /metrics is read");
    }
}

/// Prometheus text for `/metrics`.
pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upkeep thread runs once the recorder is installed (its name is what `ps -L` shows;
    /// read from Linux's /proc).
    #[cfg(target_os = "linux")]
    #[test]
    fn installing_the_recorder_starts_the_upkeep_thread() {
        assert!(handle().is_some(), "the recorder installs in a test process");
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .map(|tasks| {
                    tasks
                        .flatten()
                        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                        .map(|n| n.trim().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        // A new thread names itself once it runs: until then it shows its parent's name.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !names().iter().any(|n| n == UPKEEP_THREAD) {
            assert!(std::time::Instant::now() < deadline, "threads: {:?}", names());
            std::thread::yield_now();
        }
    }
}
