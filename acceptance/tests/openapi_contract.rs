//! The contract says exactly what the edge accepts: Schemathesis generates requests from
//! `schema/openapi.json` (valid ones, invalid ones, and sequences along the document's links) and
//! sends them to a real `postern-edge`. The run fails on any request the document allows that
//! the edge refuses (beyond the answers the document declares for rules no schema can say: see
//! `acceptance/schemathesis/hooks.py`), any request it forbids that the edge accepts, any 5xx,
//! and any answer whose status, headers, content type or body the document does not describe.
//!
//! The tool is a Python program pinned in `acceptance/schemathesis/requirements.txt`;
//! `scripts/test` installs it into a virtualenv under `target/`. Without it the test fails and
//! says how to install it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use acceptance::EdgeProcess;
use acceptance::binaries::workspace_root;
use tokio::process::Command;

/// Examples per operation and phase: enough to reach every rule of the document, small enough
/// for about a minute on two cores (three when they are busy).
const MAX_EXAMPLES: u32 = 60;

/// A fixed seed: a failure found once is found again by the same run.
const SEED: u64 = 20_261_207;

/// How long the whole run may take before it counts as hung.
const RUN_WITHIN: Duration = Duration::from_secs(600);

/// The oldest Schemathesis major version that reads OpenAPI 3.1 without experimental flags.
const MIN_MAJOR: u32 = 4;

/// Where the tool lives: `POSTERN_SCHEMATHESIS`, else the virtualenv `scripts/test` makes under
/// `target/`, else `schemathesis` on `PATH`.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("POSTERN_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    // A relative CARGO_TARGET_DIR is relative to the workspace (`join` keeps an absolute one).
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    let venv = workspace_root()
        .join(target)
        .join("schemathesis/bin/schemathesis");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("schemathesis")
    }
}

/// The tool's major version; panics, saying how to install it, when it does not run.
async fn major_version(tool: &Path) -> u32 {
    let install = "python3 -m venv target/schemathesis && \
         target/schemathesis/bin/pip install -r acceptance/schemathesis/requirements.txt \
         (scripts/test does this)";
    let output = Command::new(tool).arg("--version").output().await;
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => panic!(
            "{} --version failed ({}): {}\ninstall Schemathesis with: {install}",
            tool.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!(
            "Schemathesis is missing ({}: {error}); the contract test needs it.\n\
             install it with: {install}",
            tool.display()
        ),
    };
    // "schemathesis, version 4.32.5"
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.rsplit(' ')
        .next()
        .and_then(|version| version.trim().split('.').next())
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("cannot read Schemathesis' version from {text:?}"))
}

/// How many operations `schema/openapi.json` describes.
fn operation_count(root: &Path) -> usize {
    let text = std::fs::read_to_string(root.join("schema/openapi.json")).expect("openapi.json");
    let document: serde_json::Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, item)| item.as_object().into_iter().flatten())
        .filter(|(method, _)| method.as_str() != "parameters")
        .count()
}

#[tokio::test]
async fn the_edge_accepts_what_openapi_json_allows_and_refuses_what_it_forbids() {
    let tool = schemathesis();
    let major = major_version(&tool).await;
    assert!(
        major >= MIN_MAJOR,
        "Schemathesis {major}.x reads OpenAPI 3.1 only behind an experimental flag; install \
         the version pinned in acceptance/schemathesis/requirements.txt"
    );

    // Schemathesis checks that every operation refuses a wrong token, one probe per operation:
    // more failed authentications than the edge's default allowance of one address. TCP
    // services get ports the system picks (`--tcp-ports 0`), so creating one can succeed.
    let edge = EdgeProcess::start_with(acceptance::EdgeOptions {
        args: vec![
            "--api-auth-failures-per-minute".into(),
            "10000".into(),
            "--tcp-ports".into(),
            "0".into(),
        ],
        ..acceptance::EdgeOptions::default()
    });
    let root = workspace_root();
    let contract = root.join("acceptance/schemathesis");
    // The tool keeps caches under its working directory: give it one of its own.
    let workdir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(&tool);
    command
        .arg("--config-file")
        .arg(contract.join("schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(root.join("schema/openapi.json"))
        .args(["--url", &edge.api_url()])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--seed", &SEED.to_string()])
        .env("SCHEMATHESIS_HOOKS", contract.join("hooks.py"))
        .env("POSTERN_API_TOKEN", &edge.admin_token)
        .current_dir(workdir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("starting Schemathesis");
    let output = tokio::time::timeout(RUN_WITHIN, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("Schemathesis did not finish within {RUN_WITHIN:?}"))
        .expect("waiting for Schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "Schemathesis found requests where the edge and schema/openapi.json disagree \
         ({}):\n{report}\n--- the edge's log ---\n{}",
        output.status,
        edge.log()
    );
    let operations = operation_count(&root);
    assert!(
        report.contains(&format!("Tested: {operations}")),
        "not all {operations} operations of openapi.json were tested:\n{report}"
    );
    println!("{report}");
}
