//! Transforms in TypeScript (issue: TypeScript transforms): the types of an endpoint's `data`
//! and `ctx` from the admin API and `facade endpoints types`, and the sample transform checked
//! with the real TypeScript compiler (`tsc --strict`) against them — a misspelt field fails.

use std::path::Path;

use serde_json::json;

use crate::cli::{facade, text};
use crate::endpoints::Admin;
use crate::helpers::{repo_path, spawn_with};

const ADMIN: &str = "fcd_admin_for_tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versions_types_come_from_the_admin_api_and_the_cli() {
    let hash = facade::http::auth::token_hash(ADMIN);
    let app = spawn_with(move |c| c.admin.token_sha256 = vec![hash]).await;
    let a = Admin { app: &app, token: ADMIN.to_owned() };
    assert_eq!(a.post("/clients", json!({ "name": "box", "team": "box" })).await.0, 201);
    let document = "query Tile($id: ID!) { t: title(id: $id) { id name year rating { average } } }";
    assert_eq!(a.publish("box", "tile", document).await.0, 201);
    let get = |path: String| {
        let r = app.client.get(format!("{}/admin/v1{path}", app.base)).bearer_auth(ADMIN).send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, types) = get("/clients/box/endpoints/tile/versions/1/types".into()).await;
    assert_eq!(code, 200, "{types}");
    assert!(types.contains("The types of box/tile@1"), "{types}");
    assert!(
        types.contains(
            "export type Data = {\n  t: {\n    id: string;\n    name: string;\n    year: number | null;"
        ),
        "{types}"
    );
    assert!(types.contains("export type Variables = {\n  id: string;\n};"), "{types}");
    let (code, latest) = get("/clients/box/endpoints/tile/versions/latest/types".into()).await;
    assert_eq!((code, &latest), (200, &types));
    let (code, body) = get("/clients/box/endpoints/tile/versions/7/types".into()).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("box/tile has no version 7"), "{body}");

    // A draft document, not stored: the playground types the transform being written so.
    let draft = |document: &str| {
        let r = app
            .client
            .post(format!("{}/admin/v1/clients/box/endpoints/tile/types", app.base))
            .bearer_auth(ADMIN)
            .json(&json!({ "document": document }))
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, body) = draft("{ title(id: 1) { name } }").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("The types of box/tile (draft)") && body.contains("title: {\n    name: string;"),
        "{body}"
    );
    let (code, body) = draft("{ title(id: 1) { nope } }").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#"Unknown field \"nope\""#), "{body}");

    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        facade(&["endpoints", "types", "box/tile@1", "--url", &base, "--token", ADMIN], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), types);
    let out = facade(&["endpoints", "types", "box", "--url", &app.base, "--token", ADMIN], &[]);
    assert!(!out.status.success() && text(&out).contains("expected CLIENT/ENDPOINT"), "{}", text(&out));
}

/// The TypeScript compiler of `tests/typescript` (`npm ci` there), or why it is missing.
fn tsc() -> Result<std::path::PathBuf, String> {
    let tsc = repo_path("tests/typescript/node_modules/typescript/bin/tsc");
    if !tsc.is_file() {
        return Err(format!("{} is missing: run npm ci in tests/typescript", tsc.display()));
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(tsc),
        _ => Err("node is not installed".to_owned()),
    }
}

/// Checks `transform` against `types` with `tsc --noEmit --strict`: its output when it fails.
fn check(dir: &Path, tsc: &Path, types: &str, transform: &str) -> Result<(), String> {
    std::fs::write(dir.join("home.types.ts"), types).unwrap();
    std::fs::write(dir.join("home.ts"), transform).unwrap();
    let config = json!({
        "compilerOptions": {
            "strict": true, "noEmit": true, "target": "es2022", "module": "es2022",
            "moduleResolution": "bundler", "lib": ["es2022"], "types": []
        },
        "files": ["home.ts"]
    });
    std::fs::write(dir.join("tsconfig.json"), config.to_string()).unwrap();
    let out = std::process::Command::new("node").arg(tsc).arg("-p").arg(dir).output().expect("node runs");
    if out.status.success() { Ok(()) } else { Err(text(&out)) }
}

#[test]
fn the_sample_transform_type_checks_against_its_types_and_a_misspelt_field_does_not() {
    let tsc = match tsc() {
        Ok(tsc) => tsc,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED the_sample_transform_type_checks…: {why}");
            return;
        }
        Err(why) => panic!("CI must check transforms with tsc: {why}"),
    };
    // The sample's types, committed beside it for editors, are what the tool makes now.
    let out = facade(&["endpoints", "types", "--document", "resolvers-js/endpoints/tv/home.graphql"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let types = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(repo_path("resolvers-js/endpoints/tv/home.types.ts")).unwrap();
    assert!(
        committed == types,
        "resolvers-js/endpoints/tv/home.types.ts is stale: run `facade endpoints types --document \
         resolvers-js/endpoints/tv/home.graphql > resolvers-js/endpoints/tv/home.types.ts`"
    );
    let sample = std::fs::read_to_string(repo_path("resolvers-js/endpoints/tv/home.ts")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    check(dir.path(), &tsc, &types, &sample).unwrap_or_else(|e| panic!("the sample should check:\n{e}"));
    // A field the query does not select, spelt wrong.
    let misspelt = sample.replace("t.artwork.url", "t.artwork.uri");
    assert_ne!(misspelt, sample);
    let e = check(dir.path(), &tsc, &types, &misspelt).expect_err("a misspelt field must fail");
    assert!(e.contains("home.ts(") && e.contains("'uri'"), "{e}");
    // A field that may be null, read without a check.
    let unchecked = sample.replace(
        "t.rating ? Math.round(t.rating.average * 2) / 2 : null",
        "Math.round(t.rating.average * 2) / 2",
    );
    assert_ne!(unchecked, sample);
    let e = check(dir.path(), &tsc, &types, &unchecked).expect_err("null must be checked");
    assert!(e.contains("possibly 'null'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_transform_is_published_and_its_errors_are_placed_in_the_typescript() {
    let hash = facade::http::auth::token_hash(ADMIN);
    let app = spawn_with(move |c| c.admin.token_sha256 = vec![hash]).await;
    let a = Admin { app: &app, token: ADMIN.to_owned() };
    assert_eq!(a.post("/clients", json!({ "name": "box", "team": "box" })).await.0, 201);
    let document = "query T($id: ID!) { title(id: $id) { name } }";
    let publish = |script: &'static str| {
        a.post("/clients/box/endpoints/t/versions", json!({ "document": document, "script": script }))
    };
    // A syntax error, placed in the TypeScript as written.
    let (code, body) = publish("type D = { title: { name: string } | null };\nexport default function (data: D) {\n  return data.(;\n}\n").await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("box/t@new:3:15"), "{body}");
    // TypeScript that would need code generated is refused at its place.
    let (code, body) = publish("enum Kind { A }\nexport default function () { return Kind.A; }\n").await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("box/t@new:1:1"), "{body}");
    // A transform with types, interfaces and a type-only import runs.
    let script = "import type { Data } from \"./t.types\";\ninterface Out {\n  letters: number;\n}\nexport default function (data: { title: { name: string } | null }, ctx: { variables: { id: string } }): Out {\n  if (ctx.variables.id === \"2\") {\n    throw new Error(\"no second title\");\n  }\n  return { letters: (data.title as { name: string }).name.length };\n}\n";
    let (code, body) = publish(script).await;
    assert_eq!(code, 201, "{body}");
    let get = |id: &str| {
        let url = format!("{}/v1/box/t?id={id}", app.base);
        let r = app.client.get(url).bearer_auth(ADMIN).send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (code, body) = get("1").await;
    assert_eq!(code, 200, "{body}");
    assert!(body["letters"].as_u64().unwrap() > 0, "{body}");
    // Thrown at run time: line and column in the TypeScript (of `Error(`, where QuickJS
    // places a throw).
    let (code, body) = get("2").await;
    assert_eq!(code, 500, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("no second title") && message.contains("box/t@1:7:15"), "{body}");
}
