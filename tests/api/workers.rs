//! Script workers as processes: a call stuck in a native built-in is stopped by ending its
//! worker (H1 of the second security probe), other calls are answered meanwhile, a crash costs
//! only its call, and the queue is bounded in length and in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use facade::scripts::{Script, ScriptError, ScriptLimits, ScriptPool};
use serde_json::{Value, json};

use crate::endpoints::{Admin, app_on};
use crate::helpers::script_pool;

fn script(name: &str, body: &str) -> Script {
    Script::new(name, &format!("export default function (data, ctx) {{ {body} }}"))
}

async fn transform(pool: &ScriptPool, s: &Script, data: &str) -> Result<String, ScriptError> {
    let out = pool.transform(s, data.as_bytes().to_vec(), b"{}".to_vec()).await?;
    Ok(String::from_utf8(out.json).unwrap())
}

/// Polls `done` until it holds, for at most 20 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The probe's cases: native string searches and a BigInt conversion that QuickJS's
/// interrupt handler never sees.
const NATIVE_STALLS: &[(&str, &str)] = &[
    ("indexOf", "const h = 'a'.repeat(2 ** 19), n = 'a'.repeat(2 ** 18) + 'b'; return h.indexOf(n);"),
    ("includes", "const h = 'a'.repeat(2 ** 19), n = 'a'.repeat(2 ** 18) + 'b'; return h.includes(n);"),
    ("split", "const h = 'a'.repeat(2 ** 19), n = 'a'.repeat(2 ** 18) + 'b'; return h.split(n).length;"),
    (
        "replaceAll",
        "const h = 'a'.repeat(2 ** 19), n = 'a'.repeat(2 ** 18) + 'b'; return h.replaceAll(n, '').length;",
    ),
    ("BigInt toString", "return (7n ** 2000000n).toString().length;"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_stall_is_stopped_by_ending_its_worker_and_the_pool_serves_on() {
    let pool = script_pool(2, ScriptLimits::default());
    let healthy = script("tv/home@1", "return data.n + 1;");
    for (name, body) in NATIVE_STALLS {
        let replaced = pool.workers_replaced();
        let stall = script(&format!("web/{name}@1"), body);
        let error = transform(&pool, &stall, "{}").await.unwrap_err();
        assert!(matches!(error, ScriptError::Deadline { .. }), "{name}: {error}");
        assert!(error.to_string().contains(&format!("web/{name}@1")), "names the script: {error}");
        assert_eq!(pool.workers_replaced(), replaced + 1, "{name}: the worker was ended and replaced");
        assert_eq!(transform(&pool, &healthy, r#"{"n":1}"#).await.unwrap(), "2", "after {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_calls_are_answered_while_a_stall_runs() {
    // A long deadline, so that the stall surely outlasts the healthy calls made meanwhile.
    let limits = ScriptLimits { deadline: Duration::from_secs(2), ..ScriptLimits::default() };
    let pool = script_pool(2, limits);
    let stall = script("web/bomb@1", NATIVE_STALLS[0].1);
    let stalled = {
        let (pool, stall) = (pool.clone(), stall.clone());
        tokio::spawn(async move { transform(&pool, &stall, "{}").await })
    };
    until("the stall to reach a worker", || pool.trips() == 1).await;
    let healthy = script("tv/home@1", "return data.n * 2;");
    for n in 0..20 {
        assert_eq!(transform(&pool, &healthy, &format!("{{\"n\":{n}}}")).await.unwrap(), (n * 2).to_string());
    }
    assert!(!stalled.is_finished(), "the 20 calls were answered while the stall still ran");
    let error = stalled.await.unwrap().unwrap_err();
    assert!(matches!(error, ScriptError::Deadline { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_costs_only_its_call() {
    let limits = ScriptLimits { deadline: Duration::from_secs(30), ..ScriptLimits::default() };
    let pool = script_pool(1, limits);
    let before = pool.worker_pids();
    assert_eq!(before.len(), 1);
    let spin = script("web/spin@1", "while (true) {}");
    let spinning = {
        let (pool, spin) = (pool.clone(), spin.clone());
        tokio::spawn(async move { transform(&pool, &spin, "{}").await })
    };
    until("the call to reach the worker", || pool.trips() == 1).await;
    let killed = std::process::Command::new("kill").args(["-KILL", &before[0].to_string()]).status().unwrap();
    assert!(killed.success());
    let error = spinning.await.unwrap().unwrap_err();
    assert!(matches!(error, ScriptError::Crashed { .. }), "{error}");
    assert!(error.to_string().contains("signal 9"), "{error}");
    assert_eq!(pool.workers_replaced(), 1);
    assert_ne!(pool.worker_pids(), before, "a new worker");
    let ok = script("tv/home@1", "return 'fine';");
    assert_eq!(transform(&pool, &ok, "{}").await.unwrap(), r#""fine""#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_in_length_and_in_time_and_drops_calls_nobody_waits_for() {
    let program = facade::scripts::WorkerProgram(env!("CARGO_BIN_EXE_facade").into());
    let pool = ScriptPool::start(facade::scripts::PoolSettings {
        program,
        workers: 1,
        queue: 2,
        max_wait: Duration::from_millis(200),
        // The spin holds the one worker for 2 s of CPU: far longer than the wait allowed.
        limits: ScriptLimits { deadline: Duration::from_secs(2), ..ScriptLimits::default() },
        address_space: 0,
    })
    .unwrap();
    let spin = script("web/spin@1", "while (true) {}");
    let busy = {
        let (pool, spin) = (pool.clone(), spin.clone());
        tokio::spawn(async move { transform(&pool, &spin, "{}").await })
    };
    until("the worker to be busy", || pool.trips() == 1).await;
    let ok = script("tv/home@1", "return 1;");
    // Queued behind 2 s of CPU: its caller stops waiting at 200 ms, while the worker is held.
    let waiting = {
        let (pool, ok) = (pool.clone(), ok.clone());
        tokio::spawn(async move { transform(&pool, &ok, "{}").await })
    };
    // Its caller gives up at once: the call is dropped, not run.
    let gone = {
        let (pool, ok) = (pool.clone(), ok.clone());
        tokio::spawn(async move { transform(&pool, &ok, "{}").await })
    };
    tokio::task::yield_now().await;
    // The queue (2) is full: the next call is refused at once.
    until("the two calls to be queued", || pool.queued() == 2).await;
    let refused = transform(&pool, &ok, "{}").await.unwrap_err();
    assert!(matches!(refused, ScriptError::Busy { capacity: 2 }), "{refused}");
    gone.abort();
    let waited = waiting.await.unwrap().unwrap_err();
    assert!(matches!(waited, ScriptError::Waited { .. }), "{waited}");
    assert!(!busy.is_finished(), "the wait ended while every worker was still held");
    assert!(matches!(busy.await.unwrap().unwrap_err(), ScriptError::Deadline { .. }));
    // Both queued calls were abandoned by their callers: the lane drops them unrun.
    until("the abandoned calls to be dropped", || pool.dropped() == 2).await;
    assert_eq!(pool.trips(), 1, "neither queued call ran");
    assert_eq!(transform(&pool, &ok, "{}").await.unwrap(), "1", "then the pool serves");
}

const TOKEN: &str = "fcd_admin_for_tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_trap_stops_at_the_deadline_and_other_teams_are_served() {
    let app = Arc::new(app_on(None).await);
    let admin = Admin { app: &app, token: TOKEN.to_owned() };
    admin.post("/clients", json!({"name": "web", "team": "web-team"})).await;
    // Harmless on the sample, so the publish check passes; a bomb for one query parameter.
    let trap = "export default function (d, ctx) {\n  if (ctx.variables.go === 'x') {\n    const h = 'a'.repeat(2 ** 19), n = 'a'.repeat(2 ** 18) + 'b';\n    return h.indexOf(n);\n  }\n  return d;\n}";
    let body = json!({
        "document": "query($go: String) { search(term: $go, first: 1) { __typename } }",
        "script": trap,
        "sampleVariables": {"go": "night"},
    });
    let (status, published) = admin.post("/clients/web/endpoints/bomb/versions", body).await;
    assert_eq!(status, 201, "{published}");
    let bombs: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let r = app.client.get(format!("{}/v1/web/bomb?go=x", app.base)).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for profile in 1..=10 {
        let r = app.client.get(format!("{}/v1/tv/home?profileId={profile}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "tv/home is served while the bombs go off");
        let home: Value = r.json().await.unwrap();
        assert!(home["rows"].as_array().is_some_and(|rows| !rows.is_empty()), "{home}");
    }
    for bomb in bombs {
        let (status, body) = bomb.await.unwrap();
        assert_eq!(status, 500, "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("web/bomb version 1") && message.contains("deadline"), "{message}");
    }
    let health: Value = app.get_json("/healthz").await;
    assert_eq!(health["scripts"]["workersReplaced"], 2, "{health}");
    // A token holder's debug waterfall shows where the transform's time went.
    let r = app
        .client
        .get(format!("{}/v1/tv/home?profileId=1", app.base))
        .header("x-facade-debug", "1")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let traced: Value = r.json().await.unwrap();
    let phases = &traced["debug"]["transform"];
    for phase in
        ["queueWaitUs", "handOffUs", "realmUs", "loadUs", "dataInUs", "runUs", "dataOutUs", "workerCpuUs"]
    {
        assert!(phases[phase].is_u64(), "{phase} in {phases}");
    }
    assert!(phases["workerCpuUs"].as_u64() > Some(0), "{phases}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_is_compiled_once_and_its_bytecode_loaded_by_every_worker() {
    let pool = script_pool(2, ScriptLimits::default());
    let checked = script("tv/home@2", "return { twice: data.n * 2, client: ctx.client ?? null };");
    assert!(!checked.compiled());
    pool.check(&checked, None).await.unwrap();
    assert!(checked.compiled(), "a check keeps the bytecode");
    let called = script("tv/home@3", "return data.n;");
    assert_eq!(transform(&pool, &called, r#"{"n":7}"#).await.unwrap(), "7");
    assert!(called.compiled(), "so does a first call from source");
    // Every later call, on either worker, loads the bytecode into a fresh realm.
    for n in 0..8 {
        assert_eq!(
            transform(&pool, &checked, &format!("{{\"n\":{n}}}")).await.unwrap(),
            format!("{{\"twice\":{},\"client\":null}}", n * 2)
        );
    }
    // A clone shares the bytecode (a snapshot's versions are clones of what was compiled).
    assert!(checked.clone().compiled());
}

#[test]
fn a_worker_that_cannot_start_fails_the_start_with_the_reason() {
    let start = |program: &str| {
        ScriptPool::start(facade::scripts::PoolSettings {
            program: facade::scripts::WorkerProgram(program.into()),
            workers: 1,
            queue: 4,
            max_wait: Duration::from_secs(1),
            limits: ScriptLimits::default(),
            address_space: 0,
        })
        .err()
        .expect("refused")
        .to_string()
    };
    let missing = start("/nonexistent/facade");
    assert!(missing.contains("cannot start a script worker (/nonexistent/facade)"), "{missing}");
    let exits = start("/bin/false");
    assert!(exits.contains("did not start") && exits.contains("exit status: 1"), "{exits}");
}
