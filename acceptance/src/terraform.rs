//! `Terraform`: the real `terraform` binary in a hermetic workspace (its own working directory
//! and HOME), with the freshly built provider installed the way a user installs it: into the
//! implied local mirror `~/.terraform.d/plugins`, so `terraform init` runs offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::binaries::binary;
use crate::edge::EdgeProcess;

/// The provider version the harness installs: the workspace's.
pub const PROVIDER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A terraform working directory with its own HOME.
pub struct Terraform {
    dir: PathBuf,
    home: PathBuf,
    env: Vec<(String, String)>,
    _temp: tempfile::TempDir,
}

/// A finished terraform command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the command exited 0.
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "terraform failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The OS_ARCH directory name terraform uses for this machine.
pub fn platform() -> String {
    let os = std::env::consts::OS;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{os}_{arch}")
}

/// Panics with a clear message when terraform is missing: the acceptance tests never skip.
pub fn require_terraform() {
    let found = Command::new("terraform")
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "terraform is not on PATH: the acceptance tests drive the real terraform binary (1.11+); install it and run again"
    );
}

impl Terraform {
    /// A workspace whose provider talks to `edge` (through POSTERN_ENDPOINT/POSTERN_API_TOKEN).
    pub fn new(edge: &EdgeProcess) -> Self {
        let mut tf = Self::offline();
        tf.env.push(("POSTERN_ENDPOINT".into(), edge.api_url()));
        tf.env
            .push(("POSTERN_API_TOKEN".into(), edge.admin_token.clone()));
        tf
    }

    /// A workspace with the provider installed and no edge configured.
    pub fn offline() -> Self {
        require_terraform();
        let temp = tempfile::Builder::new()
            .prefix("postern-tf-")
            .tempdir()
            .expect("temp dir");
        let dir = temp.path().join("work");
        let home = temp.path().join("home");
        std::fs::create_dir_all(&dir).expect("work dir");
        install_provider(&home);
        Self {
            dir,
            home,
            env: vec![
                ("TF_IN_AUTOMATION".into(), "1".into()),
                ("CHECKPOINT_DISABLE".into(), "1".into()),
                ("TF_INPUT".into(), "0".into()),
            ],
            _temp: temp,
        }
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds an environment variable for every command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Removes an environment variable set earlier.
    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Writes a file in the working directory.
    pub fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.dir.join(name), contents).expect("write config");
    }

    /// Reads a file of the working directory.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Runs `terraform <args>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let output: Output = Command::new("terraform")
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("running terraform");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `terraform init` (offline: the provider comes from the local mirror).
    pub fn init(&self) -> Run {
        self.run(&["init", "-no-color"]).success()
    }

    /// `terraform apply -auto-approve`.
    pub fn apply(&self) -> Run {
        self.run(&["apply", "-auto-approve", "-no-color"])
    }

    /// `terraform plan -out`, then the plan as JSON.
    pub fn plan(&self, extra: &[&str]) -> Plan {
        let mut args = vec!["plan", "-no-color", "-out=tfplan"];
        args.extend_from_slice(extra);
        let run = self.run(&args).success();
        let show = self.run(&["show", "-json", "tfplan"]).success();
        Plan {
            json: serde_json::from_str(&show.stdout).expect("plan JSON"),
            text: run.stdout,
        }
    }

    /// `terraform plan -detailed-exitcode`: 0 means no changes.
    pub fn plan_exit_code(&self) -> Run {
        self.run(&["plan", "-detailed-exitcode", "-no-color"])
    }

    /// `terraform show -json` of the state.
    pub fn state(&self) -> Value {
        let show = self.run(&["show", "-json"]).success();
        serde_json::from_str(&show.stdout).expect("state JSON")
    }

    /// The `values` of one resource in the state, by address.
    pub fn resource(&self, address: &str) -> Value {
        let state = self.state();
        let resources = state
            .pointer("/values/root_module/resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        resources
            .into_iter()
            .find(|r| r["address"] == address)
            .map(|r| r["values"].clone())
            .unwrap_or_else(|| panic!("{address} is not in the state"))
    }

    /// `terraform output -raw NAME`.
    pub fn output_raw(&self, name: &str) -> String {
        self.run(&["output", "-raw", name]).success().stdout
    }
}

/// A plan, as `terraform show -json` prints it.
pub struct Plan {
    /// The JSON.
    pub json: Value,
    /// What `terraform plan` printed.
    pub text: String,
}

impl Plan {
    /// The actions planned for `address` (e.g. `["update"]`, `["delete", "create"]`).
    pub fn actions(&self, address: &str) -> Vec<String> {
        self.json["resource_changes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["address"] == address)
            .map(|c| {
                c["change"]["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| panic!("{address} is not in the plan:\n{}", self.text))
    }

    /// Every address whose planned action is not `no-op`/`read`.
    pub fn changes(&self) -> Vec<(String, Vec<String>)> {
        self.json["resource_changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let actions: Vec<String> = c["change"]["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect();
                (
                    c["address"].as_str().unwrap_or_default().to_string(),
                    actions,
                )
            })
            .filter(|(_, actions)| actions.iter().any(|a| a != "no-op" && a != "read"))
            .collect()
    }

    /// Panics unless the plan changes nothing.
    pub fn expect_empty(&self) {
        assert!(
            self.changes().is_empty(),
            "expected an empty plan:\n{}",
            self.text
        );
    }
}

/// Copies the provider binary into `<home>/.terraform.d/plugins/...`, the implied local mirror.
pub fn install_provider(home: &Path) -> PathBuf {
    let source = binary("terraform-provider-postern");
    let dir = home
        .join(".terraform.d/plugins/registry.terraform.io/postern/postern")
        .join(PROVIDER_VERSION)
        .join(platform());
    std::fs::create_dir_all(&dir).expect("plugin dir");
    let target = dir.join(format!("terraform-provider-postern_v{PROVIDER_VERSION}"));
    std::fs::copy(&source, &target).expect("install provider");
    target
}

/// The `terraform { required_providers }` block every test config starts with.
pub const REQUIRED_PROVIDERS: &str = concat!(
    r#"
terraform {
  required_providers {
    postern = {
      source  = "postern/postern"
      version = ""#,
    env!("CARGO_PKG_VERSION"),
    r#""
    }
  }
}
"#
);
