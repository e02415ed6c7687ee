//! Transforms end to end: publish-time checks, device-shaped answers, limits that fail only
//! their own request.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::endpoints::{Admin, app_on, app_on_with};
use crate::helpers::TestApp;

const TOKEN: &str = "fcd_admin_for_tests";

fn admin(app: &TestApp) -> Admin<'_> {
    Admin { app, token: TOKEN.to_owned() }
}

async fn publish_with(
    app: &TestApp,
    name: &str,
    document: &str,
    script: &str,
    sample: Option<Value>,
) -> (u16, Value) {
    let mut body = json!({ "document": document, "script": script });
    if let Some(s) = sample {
        body["sampleVariables"] = s;
    }
    admin(app).post(&format!("/clients/box/endpoints/{name}/versions"), body).await
}

const DOC: &str = "query Title($id: ID!) { title(id: $id) { id name year } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_scripts_that_do_not_compile_or_throw_on_the_sample() {
    let app = app_on(None).await;
    admin(&app).post("/clients", json!({"name": "box", "team": "box-team"})).await;
    let (status, body) =
        publish_with(&app, "t", DOC, "export default function (data) {\n  return data.(;\n}", None).await;
    assert_eq!(status, 400);
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("the script was refused") && message.contains("box/t@new"), "{message}");
    let (status, body) = publish_with(
        &app,
        "t",
        DOC,
        "export default function (data) {\n  return data.title.nope.x;\n}",
        Some(json!({"id": "1"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains(":2:"), "line of the throw: {body}");
    let (status, body) = publish_with(&app, "t", DOC, "export function notDefault() {}", None).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("export default function"), "{body}");
    assert_eq!(admin(&app).get("/clients/box/endpoints/t/versions").await.0, 404, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_shape_the_answer_with_ctx_and_64_concurrent_calls_get_their_own() {
    // 64 calls at once on a busy machine: a deadline that only a runaway script reaches (the
    // 50 ms default once stopped a call that waited for a core; deadlines are tested apart).
    let app = Arc::new(app_on_with(None, |c| c.scripts.deadline_ms = 5_000).await);
    admin(&app).post("/clients", json!({"name": "box", "team": "box-team"})).await;
    let script = "export default function (data, ctx) {
        return { id: data.title.id, label: data.title.name + ' ' + data.title.year,
                 v: ctx.version, client: ctx.client, device: ctx.device.id,
                 model: ctx.device.headers['x-device-model'] || null, vars: ctx.variables };
    }";
    let (status, body) = publish_with(&app, "tile", DOC, script, Some(json!({"id": "3"}))).await;
    assert_eq!(status, 201, "{body}");
    let calls: Vec<_> = (1..=64)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let r = app
                    .client
                    .get(format!("{}/v1/box/tile?id={i}", app.base))
                    .header("x-device-id", format!("d{i}"))
                    .header("x-device-model", "tv-9000")
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let (status, body) = c.await.unwrap();
        let id = (i + 1).to_string();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(
            (&body["v"], &body["client"], &body["model"]),
            (&json!(1), &json!("box"), &json!("tv-9000"))
        );
        assert_eq!(body["device"], format!("d{}", i + 1).as_str());
        assert_eq!(body["vars"], json!({"id": id}));
        assert!(body["label"].as_str().unwrap().starts_with("The "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_transform_fails_only_its_own_request() {
    let app = Arc::new(app_on(None).await);
    admin(&app).post("/clients", json!({"name": "box", "team": "box-team"})).await;
    assert_eq!(
        publish_with(&app, "spin", DOC, "export default function () { while (true) {} }", None).await.0,
        201
    );
    assert_eq!(
        publish_with(&app, "fine", DOC, "export default function (d) { return d.title.id; }", None).await.0,
        201
    );
    let spinning: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let r = app.client.get(format!("{}/v1/box/spin?id=1", app.base)).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    for i in 1..=20 {
        let r = app.client.get(format!("{}/v1/box/fine?id={i}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), json!(i.to_string()));
    }
    for s in spinning {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, 500);
        let e = &body["errors"][0];
        assert_eq!(e["extensions"]["code"], "SCRIPT_ERROR");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("box/spin version 1") && message.contains("deadline"), "{message}");
    }
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("facade_script_errors_total"), "script failures are counted");
}

async fn trips(app: &TestApp) -> u64 {
    let health: Value = app.get_json("/healthz").await;
    health["scripts"]["trips"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_field_over_a_200_item_list_is_one_pool_trip() {
    let app = app_on(None).await;
    let query = "{ profile(id: 4) { rows(first: 10) { titles(first: 20) { runtimeMinutes runtime } } } }";
    let before = trips(&app).await;
    let body = app.graphql(query, json!({})).await;
    assert_eq!(trips(&app).await - before, 1, "200 titles, one trip");
    let titles: Vec<&Value> = body["data"]["profile"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["titles"].as_array().unwrap())
        .collect();
    assert_eq!(titles.len(), 200);
    for t in titles {
        let m = t["runtimeMinutes"].as_u64().unwrap();
        let expected = if m >= 60 { format!("{}h {}m", m / 60, m % 60) } else { format!("{m}m") };
        assert_eq!(t["runtime"], expected.as_str());
    }
    let body = app.graphql("{ title(id: 9) { name label(withYear: true) plain: label } }", json!({})).await;
    let t = &body["data"]["title"];
    assert_eq!(t["plain"], t["name"]);
    assert!(t["label"].as_str().unwrap().ends_with(')'), "{t}");
}

#[tokio::test]
async fn an_unknown_js_function_fails_the_schema_check_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let sdl = std::fs::read_to_string(crate::helpers::repo_path("schema/facade.graphql")).unwrap();
    std::fs::write(
        dir.path().join("facade.graphql"),
        sdl.replace("@js(fn: \"formatRuntime\")", "@js(fn: \"formatRuntim\")"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facade"))
        .args([
            "schema",
            "check",
            "--schema",
            dir.path().to_str().unwrap(),
            "--resolvers",
            crate::helpers::repo_path("resolvers-js").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("facade.graphql:") && stderr.contains("@js fn formatRuntim is not exported"),
        "{stderr}"
    );
}

async fn preview(who: &Admin<'_>, client: &str, script: Option<&str>) -> (u16, Value) {
    let body = json!({ "document": DOC, "variables": {"id": "1"}, "script": script });
    who.post(&format!("/clients/{client}/endpoints/probe/preview"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_runs_live_stores_nothing_and_shows_script_errors_with_line_and_column() {
    let app = app_on(None).await;
    admin(&app).post("/clients", json!({"name": "box", "team": "box-team"})).await;
    admin(&app).post("/clients", json!({"name": "other", "team": "other-team"})).await;
    let (_, t) = admin(&app).post("/tokens", json!({"team": "box-team", "label": "box"})).await;
    let team = Admin { app: &app, token: t["token"].as_str().unwrap().to_owned() };
    let (status, body) = preview(
        &team,
        "box",
        Some("export default function (data, ctx) { return { n: data.title.name, v: ctx.version }; }"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["title"]["id"], "1");
    assert_eq!(body["transformed"]["v"], 0);
    assert_eq!(body["transformed"]["n"], body["data"]["title"]["name"]);
    let fetches = body["trace"]["fetches"].as_array().unwrap();
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_eq!(fetches[0]["backend"], "catalog");
    assert!(body["timings"]["totalMs"].as_f64().unwrap() >= body["timings"]["executeMs"].as_f64().unwrap());
    // Another team's client: 403.
    assert_eq!(preview(&team, "other", None).await.0, 403);
    // A throwing script: the error with its line and column; a runaway one: the deadline.
    let (status, body) =
        preview(&team, "box", Some("export default function (data) {\n  return data.title.nope.x;\n}")).await;
    assert_eq!(status, 200);
    let e = &body["scriptError"];
    assert_eq!((e["line"].as_u64(), e["column"].as_u64().is_some()), (Some(2), true), "{body}");
    assert!(body.get("transformed").is_none());
    let (_, body) = preview(&team, "box", Some("export default function () { while (true) {} }")).await;
    assert!(body["scriptError"]["message"].as_str().unwrap().contains("deadline"), "{body}");
    // A syntax error is placed too; a bad document is refused like at publish.
    let (_, body) = preview(&team, "box", Some("export default function (d) {\n  return d.(;\n}")).await;
    assert_eq!(body["scriptError"]["line"], 2, "{body}");
    let (status, _) =
        team.post("/clients/box/endpoints/probe/preview", json!({ "document": "{ nope }" })).await;
    assert_eq!(status, 400);
    // Nothing was stored.
    assert_eq!(team.get("/clients/box/endpoints/probe/versions").await.0, 404);
}

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {

    use serde_json::{Value, json};

    use crate::attack::*;
    use crate::endpoints::{Admin, app_on};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_teams_transform_cannot_read_or_change_anothers() {
        let app = app_on(None).await;
        admin(&app).post("/clients", json!({"name": "web", "team": "web-team"})).await;
        let web = team_token(&app, "web-team").await;
        let stash = "const g = globalThis;\n\
            if (!g.__stash) { g.__stash = []; const map = Array.prototype.map;\n\
              Array.prototype.map = function (...a) { try { g.__stash.push(JSON.stringify(this).slice(0, 160)); } catch (e) {}\n\
                return map.apply(this, a); }; }\n\
            export default function (data, ctx) { const out = g.__stash.slice(); g.__stash.length = 0; return { stolen: out }; }";
        assert_eq!(
            publish_script(&app, &web, "web", "stash", "query { title(id: \"1\") { id name } }", stash).await,
            201
        );
        let get = |path: String| {
            let c = app.client.clone();
            async move {
                c.get(path)
                    .header("x-device-id", "victim-tv-1")
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let before = get(format!("{}/v1/tv/home?profileId=42", app.base)).await;
        for _ in 0..6 {
            get(format!("{}/v1/web/stash", app.base)).await;
        }
        let victim = get(format!("{}/v1/tv/home?profileId=42", app.base)).await;
        assert_eq!(victim, before, "the tv answer is unchanged");
        let stolen = get(format!("{}/v1/web/stash", app.base)).await;
        assert_eq!(stolen, json!({ "stolen": [] }), "nothing of the tv device's data");
        // A refused publish whose top level rewrites a built-in changes nobody's answer.
        for attack in [
            "Math.round = function () { return 5; };",
            "Object.prototype.toJSON = function () { return 'owned'; };",
            "String.prototype.concat = function () { return 'owned'; };",
            "JSON.stringify = function () { return '\"owned\"'; };",
            "Function.prototype.apply = function () { return 'owned'; };",
            "globalThis.Math = { round: () => 5 };",
        ] {
            let status = publish_script(
                &app,
                &web,
                "web",
                "sneaky",
                "query { title(id: \"1\") { id } }",
                &format!("{attack}\nexport const x = 1;"),
            )
            .await;
            assert_eq!(status, 400, "{attack}");
            for _ in 0..4 {
                assert_eq!(
                    get(format!("{}/v1/tv/home?profileId=42", app.base)).await,
                    before,
                    "after {attack}"
                );
            }
        }
        let (status, _) =
            Admin { app: &app, token: web.clone() }.get("/clients/web/endpoints/sneaky/versions").await;
        assert_eq!(status, 404, "a refused publish stores nothing");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_devices_of_one_endpoint_never_see_each_others_data() {
        let app = app_on(None).await;
        admin(&app).post("/clients", json!({"name": "web", "team": "web-team"})).await;
        let keeper = "const seen = [];\nexport default function (data, ctx) { seen.push(ctx.device.id); globalThis.last = ctx.device.id; return { seen }; }";
        assert_eq!(
            publish_script(&app, TOKEN, "web", "keeper", "query { title(id: \"1\") { id } }", keeper).await,
            201
        );
        for device in ["device-a", "device-b", "device-c", "device-d"] {
            let body: Value = app
                .client
                .get(format!("{}/v1/web/keeper", app.base))
                .header("x-device-id", device)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(body, json!({ "seen": [device] }));
        }
    }
}
