//! The framework end to end with the real `terraform` CLI: this test binary is itself
//! the provider. Run by cargo, it installs a copy of itself into an implied local
//! mirror under a temporary `$HOME` and drives terraform through init, validate, plan,
//! apply, no-op plans, update, replace, drift, import (CLI and `import {}` with
//! generated config), ephemeral values into write-only attributes, data sources and
//! destroy. Started by terraform (magic cookie set), it serves the test provider in
//! `support/`.
//!
//! Requires `terraform` on PATH and fails (never skips) without it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use serde_json::Value as Json;
use terraform_provider_postern::protocol::handshake::MAGIC_COOKIE_KEY;

/// The provider's version: the workspace's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    if std::env::var_os(MAGIC_COOKIE_KEY).is_some() {
        return serve();
    }
    let Some(scratch) = tempfile::Builder::new()
        .prefix("postern-provider-e2e")
        .tempdir()
        .ok()
    else {
        eprintln!("cannot create a temporary directory");
        return ExitCode::FAILURE;
    };
    let result = std::panic::catch_unwind(|| scenario(scratch.path()));
    match result {
        Ok(()) => {
            println!("terraform end-to-end: ok");
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!(
                "terraform end-to-end failed; work dir kept at {}",
                scratch.path().display()
            );
            // Keep the directory for inspection.
            std::mem::forget(scratch);
            ExitCode::FAILURE
        }
    }
}

/// Provider mode: Terraform launched us.
fn serve() -> ExitCode {
    terraform_provider_postern::logging::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(terraform_provider_postern::protocol::serve(
        support::registry(),
    )) {
        Ok(()) => {
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

struct Terraform {
    work: PathBuf,
    home: PathBuf,
    log: PathBuf,
}

impl Terraform {
    fn command(&self, args: &[&str]) -> Output {
        Command::new("terraform")
            .args(args)
            .arg("-no-color")
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_LOG", "debug")
            .env("TF_LOG_PATH", &self.log)
            .env_remove("TF_CLI_CONFIG_FILE")
            .env_remove("TF_PLUGIN_CACHE_DIR")
            .output()
            .unwrap_or_else(|e| panic!("terraform must be on PATH ({e})"))
    }

    /// Runs terraform and returns stdout; panics with the output on failure.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "terraform {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs terraform expecting failure; returns stdout + stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.command(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "terraform {args:?} should fail:\n{text}"
        );
        text
    }

    /// `plan -out` + `show -json`: the planned actions by resource address.
    fn plan_actions(&self) -> Vec<(String, Vec<String>)> {
        self.ok(&["plan", "-out=tfplan", "-input=false"]);
        let json: Json =
            serde_json::from_str(&self.ok(&["show", "-json", "tfplan"])).unwrap_or_default();
        json["resource_changes"]
            .as_array()
            .map(|changes| {
                changes
                    .iter()
                    .map(|c| {
                        let address = c["address"].as_str().unwrap_or_default().to_owned();
                        let actions = c["change"]["actions"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (address, actions)
                    })
                    .filter(|(_, actions): &(String, Vec<String>)| actions != &["no-op"])
                    .collect()
            })
            .unwrap_or_default()
    }

    fn plan_json(&self) -> Json {
        self.ok(&["plan", "-out=tfplan", "-input=false"]);
        serde_json::from_str(&self.ok(&["show", "-json", "tfplan"])).unwrap_or_default()
    }

    fn state(&self) -> Json {
        serde_json::from_str(&self.ok(&["show", "-json"])).unwrap_or_default()
    }

    fn write_config(&self, body: &str) {
        let text = format!(
            r#"terraform {{
  required_providers {{
    postern = {{ source = "postern/postern", version = "{VERSION}" }}
  }}
}}
provider "postern" {{
  endpoint = "http://127.0.0.1:1"
  store    = "{store}"
}}
{body}
"#,
            store = self.work.join("store.json").display()
        );
        std::fs::write(self.work.join("main.tf"), text).expect("write main.tf");
    }

    fn store(&self) -> support::StoreFile {
        support::read_store(&self.work.join("store.json")).expect("store")
    }

    fn write_store(&self, store: &support::StoreFile) {
        let text = serde_json::to_string_pretty(store).expect("store json");
        std::fs::write(self.work.join("store.json"), text).expect("write store");
    }
}

fn resource_values(state: &Json, address: &str) -> Json {
    state["values"]["root_module"]["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["address"] == address))
        .map(|r| r["values"].clone())
        .unwrap_or(Json::Null)
}

const THINGS: &str = r#"
ephemeral "postern_token" "t" {
  length = 8
}

resource "postern_thing" "a" {
  name   = "alpha"
  zone   = "z1"
  size   = 0.1
  labels = { release = "stable" }
  secret = ephemeral.postern_token.t.value
  origin = { host = "example.com" }
  routes = [{ weight = 90 }, { weight = 10 }]
  tags   = ["x", "y", "x"]
  extra  = { n = 1.5, list = ["x", true] }
}

resource "postern_thing" "big" {
  name = "big"
  zone = "z1"
  size = 123456789012345678901234567890.000000000000000000001
}

resource "postern_thing" "b" {
  name = "b-${postern_thing.a.id}"
  zone = "z1"
}

data "postern_thing" "a" {
  name = postern_thing.a.name
}

output "a_zone" {
  value = data.postern_thing.a.zone
}
"#;

fn scenario(scratch: &Path) {
    let tf = Terraform {
        work: scratch.join("work"),
        home: scratch.join("home"),
        log: scratch.join("terraform.log"),
    };
    let mirror = tf
        .home
        .join(".terraform.d/plugins/registry.terraform.io/postern/postern")
        .join(VERSION)
        .join("linux_amd64");
    std::fs::create_dir_all(&mirror).expect("mirror dir");
    std::fs::create_dir_all(&tf.work).expect("work dir");
    let me = std::env::current_exe().expect("current exe");
    std::fs::copy(
        &me,
        mirror.join(format!("terraform-provider-postern_v{VERSION}")),
    )
    .expect("install provider");

    step("init");
    tf.write_config(THINGS);
    tf.ok(&["init", "-input=false"]);

    step("validate reports errors on the attribute");
    tf.write_config(&THINGS.replace(r#"name   = "alpha""#, r#"name   = "Alpha One""#));
    let out = tf.fails(&["validate"]);
    assert!(out.contains("Invalid name"), "{out}");
    assert!(
        out.contains(r#"name   = "Alpha One""#),
        "diagnostic points at the attribute:\n{out}"
    );
    tf.write_config(THINGS);
    tf.ok(&["validate"]);
    tf.write_config(THINGS);
    let main_tf = std::fs::read_to_string(tf.work.join("main.tf")).unwrap_or_default();
    std::fs::write(
        tf.work.join("main.tf"),
        main_tf.replace("http://127.0.0.1:1", "ftp://nope"),
    )
    .expect("write main.tf");
    let out = tf.fails(&["validate"]);
    assert!(
        out.contains("Invalid endpoint") && out.contains("ftp://nope"),
        "{out}"
    );
    tf.write_config(THINGS);

    step("plan a create: computed unknown, defaults filled, write-only null");
    let plan = tf.plan_json();
    let a = plan["resource_changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["address"] == "postern_thing.a"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(a["change"]["actions"], serde_json::json!(["create"]));
    assert_eq!(a["change"]["after_unknown"]["id"], true);
    assert_eq!(a["change"]["after"]["mode"], "enforce");
    assert_eq!(a["change"]["after"]["origin"]["port"], 80);
    assert_eq!(a["change"]["after"]["secret"], Json::Null);

    step("apply");
    let out = tf.ok(&["apply", "-auto-approve", "-input=false"]);
    assert!(out.contains(r#"a_zone = "z1""#), "{out}");
    let state = tf.state();
    let a = resource_values(&state, "postern_thing.a");
    assert!(
        a["id"].as_str().is_some_and(|id| id.starts_with("t-")),
        "{a}"
    );
    assert_eq!(a["secret"], Json::Null, "write-only never stored");
    assert_eq!(a["secret_length"], 8, "the ephemeral value reached apply");
    assert_eq!(a["tags"].as_array().map(Vec::len), Some(2));
    assert!(a["routes"][1]["id"].is_string());
    assert_eq!(a["extra"]["list"][1], true, "dynamic value round-trips");
    let b = resource_values(&state, "postern_thing.b");
    assert_eq!(
        b["name"],
        format!("b-{}", a["id"].as_str().unwrap_or_default())
    );
    assert!(
        tf.store().closed_tokens >= 1,
        "the ephemeral resource was closed"
    );

    step("plan right after apply is empty (exact numbers, sets, defaults, stable values)");
    assert_eq!(tf.plan_actions(), vec![]);

    step("update in place keeps stable values known");
    tf.write_config(&THINGS.replace(
        r#"labels = { release = "stable" }"#,
        r#"labels = { release = "canary" }"#,
    ));
    let plan = tf.plan_json();
    let change = plan["resource_changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["address"] == "postern_thing.a"))
        .map(|c| c["change"].clone())
        .unwrap_or_default();
    assert_eq!(change["actions"], serde_json::json!(["update"]));
    assert_eq!(
        change["after"]["id"], a["id"],
        "stable id known at plan time"
    );
    assert_eq!(change["after"]["created_at"], a["created_at"]);
    assert_eq!(change["after"]["routes"][0]["id"], a["routes"][0]["id"]);
    assert_eq!(change["after_unknown"]["revision"], true);
    tf.ok(&["apply", "-auto-approve", "-input=false"]);
    assert_eq!(tf.plan_actions(), vec![]);

    step("a requires-replace attribute re-creates");
    let config = THINGS
        .replace(
            r#"labels = { release = "stable" }"#,
            r#"labels = { release = "canary" }"#,
        )
        .replace(
            "name   = \"alpha\"\n  zone   = \"z1\"",
            "name   = \"alpha\"\n  zone   = \"z2\"",
        );
    tf.write_config(&config);
    let actions = tf.plan_actions();
    assert!(
        actions.iter().any(|(addr, acts)| addr == "postern_thing.a"
            && acts.contains(&"delete".to_owned())
            && acts.contains(&"create".to_owned())),
        "{actions:?}"
    );
    tf.ok(&["apply", "-auto-approve", "-input=false"]);
    assert_eq!(tf.plan_actions(), vec![]);

    step("an object deleted outside terraform is planned for creation");
    let state = tf.state();
    let a_id = resource_values(&state, "postern_thing.a")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut store = tf.store();
    store.things.remove(&a_id);
    tf.write_store(&store);
    let actions = tf.plan_actions();
    assert!(
        actions
            .iter()
            .any(|(addr, acts)| addr == "postern_thing.a" && acts == &["create"]),
        "{actions:?}"
    );
    tf.ok(&["apply", "-auto-approve", "-input=false"]);

    step("terraform import, then an empty plan");
    let state = tf.state();
    let big_id = resource_values(&state, "postern_thing.big")["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tf.ok(&["state", "rm", "postern_thing.big"]);
    let out = tf.fails(&["import", "-input=false", "postern_thing.big", "t-nope"]);
    assert!(out.contains("non-existent"), "{out}");
    tf.ok(&["import", "-input=false", "postern_thing.big", &big_id]);
    assert_eq!(tf.plan_actions(), vec![]);

    step("import {} block with -generate-config-out");
    let mut store = tf.store();
    store.things.insert(
        "t-900".to_owned(),
        support::ThingModel {
            id: Some("t-900".to_owned()),
            name: "outside".to_owned(),
            zone: "z9".to_owned(),
            mode: "report".to_owned(),
            created_at: Some("2026-02-02T00:00:00Z".to_owned()),
            revision: Some(4),
            ..Default::default()
        },
    );
    tf.write_store(&store);
    let with_import =
        format!("{config}\nimport {{\n  to = postern_thing.c\n  id = \"t-900\"\n}}\n");
    tf.write_config(&with_import);
    tf.ok(&["plan", "-input=false", "-generate-config-out=generated.tf"]);
    let generated = std::fs::read_to_string(tf.work.join("generated.tf")).unwrap_or_default();
    assert!(
        generated.contains(r#"name "#) && generated.contains(r#""outside""#),
        "{generated}"
    );
    let out = tf.ok(&["apply", "-auto-approve", "-input=false"]);
    assert!(out.contains("1 imported"), "{out}");
    assert_eq!(tf.plan_actions(), vec![]);

    step("a failed create records what was created (tainted)");
    tf.ok(&["state", "rm", "postern_thing.c"]);
    std::fs::remove_file(tf.work.join("generated.tf")).expect("remove generated.tf");
    let failing = format!(
        "{config}\nresource \"postern_thing\" \"f\" {{\n  name = \"fail-after-create\"\n  zone = \"z1\"\n}}\n"
    );
    tf.write_config(&failing);
    let out = tf.fails(&["apply", "-auto-approve", "-input=false"]);
    assert!(out.contains("Failed after create"), "{out}");
    let state = tf.state();
    let f = state["values"]["root_module"]["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["address"] == "postern_thing.f"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(f["tainted"], true, "{f}");

    step("plan-time errors from the resource hook");
    tf.write_config(&THINGS.replace(
        "zone   = \"z1\"\n  size   = 0.1",
        "zone   = \"forbidden\"\n  size   = 0.1",
    ));
    let out = tf.fails(&["plan", "-input=false"]);
    assert!(out.contains("Forbidden zone"), "{out}");

    step("destroy");
    tf.write_config(&failing);
    tf.ok(&["destroy", "-auto-approve", "-input=false"]);
    let left: Vec<String> = tf.store().things.keys().cloned().collect();
    assert_eq!(
        left,
        vec!["t-900".to_owned()],
        "only the unmanaged thing is left"
    );

    step("every provider process exited cleanly");
    let log = std::fs::read_to_string(&tf.log).unwrap_or_default();
    assert!(log.contains("plugin exited"), "no provider ran?");
    for bad in ["failed to exit gracefully", "plugin crashed", "panic:"] {
        assert!(!log.contains(bad), "terraform log contains {bad:?}");
    }
}

fn step(name: &str) {
    println!("-- {name}");
}
