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
