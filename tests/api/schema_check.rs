//! Broken schemas: `facade schema check` and startup fail with file, line and reason.

use std::path::Path;
use std::process::Command;

use facade::app::App;

use crate::helpers::{repo_path, test_config};

fn facade(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_facade")).args(args).output().expect("runs facade")
}

fn broken_schema(dir: &Path) {
    let good = std::fs::read_to_string(repo_path("schema/facade.graphql")).unwrap();
    std::fs::write(dir.join("facade.graphql"), good).unwrap();
    std::fs::write(
        dir.join("extra.graphql"),
        "extend type Title {\n  similar: [Title!]\n    @http(backend: \"recs\", get: \"/similar/{$args.id}\")\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("zbroken.graphql"), "type Oops {\n  a: String\n  b:\n}\n").unwrap();
}

#[test]
fn schema_check_passes_on_the_repository_schema() {
    let out = facade(&["schema", "check", "--schema", repo_path("schema").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn schema_check_lists_every_problem_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    broken_schema(dir.path());
    let out = facade(&["schema", "check", "--schema", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("extra.graphql:3:") && stderr.contains("unknown backend \"recs\""), "{stderr}");
    assert!(stderr.contains("bad template variable {$args.id}"), "{stderr}");
    assert!(stderr.contains("zbroken.graphql:4:") && stderr.contains("syntax error"), "{stderr}");
}

#[tokio::test]
async fn startup_fails_on_a_broken_schema() {
    let dir = tempfile::tempdir().unwrap();
    broken_schema(dir.path());
    let mut config = test_config();
    config.schema_dir = dir.path().to_owned();
    config.database.url = format!("sqlite://{}", dir.path().join("facade.db").display());
    let error = App::build(&config).await.err().expect("startup refuses the schema").to_string();
    assert!(error.contains("extra.graphql:3:"), "{error}");
    assert!(error.contains("zbroken.graphql:4:"), "{error}");

    let out =
        facade(&["serve", "--demo", "--listen", "127.0.0.1:0", "--schema", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown backend \"recs\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_is_checked_against_every_stored_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("reg.db").display());
    let url = db.clone();
    // Demo mode publishes the tv, ios and web sample endpoints into this registry.
    let _app = crate::helpers::spawn_with(move |c| c.database.url = url).await;
    let run = |schema: std::path::PathBuf| {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_facade"))
                .args(["schema", "check", "--against-registry", "--schema", schema.to_str().unwrap()])
                .args(["--resolvers", repo_path("resolvers-js").to_str().unwrap()])
                .env("FACADE_DATABASE__URL", db)
                .output()
                .unwrap()
        })
    };
    let out = run(repo_path("schema")).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 stored versions"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let changed = tempfile::tempdir().unwrap();
    let sdl = std::fs::read_to_string(repo_path("schema/facade.graphql")).unwrap();
    assert!(sdl.contains("  year: Int\n"));
    std::fs::write(changed.path().join("facade.graphql"), sdl.replace("  year: Int\n", "")).unwrap();
    let out = run(changed.path().to_owned()).await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tv/home@1:") && stderr.contains("web/home@1:") && stderr.contains("year"),
        "{stderr}"
    );
    assert!(!stderr.contains("ios/home@1:"), "ios/home does not ask for year: {stderr}");
    assert!(stderr.contains("2 of 3 stored versions would break"), "{stderr}");
}
