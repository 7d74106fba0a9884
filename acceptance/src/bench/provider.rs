//! Workload (f): the Terraform provider against Terraform's own floor. One repetition applies
//! N `postern_hostname` resources, each with its own `postern_tunnel`, against the edge, and
//! then plans again with nothing to change. Beside it the same `apply` and `plan` of built-in
//! `terraform_data` resources (no provider process, no API), twice: N of them, and the same
//! shape as the Postern configuration (N, plus N that each reference one of the first by
//! index, as the hostnames reference their tunnels: Terraform's own cost grows with the
//! resource count and those references). Terraform runs with its default parallelism (10).
//! Plus the control API alone: tunnels created per second by 8 concurrent clients.

use std::collections::BTreeMap;
use std::time::Instant;

use postern_schema::api::TunnelSpec;

use crate::terraform::REQUIRED_PROVIDERS;
use crate::{EdgeProcess, Terraform};

/// What one repetition of (f) measured, in seconds (and creates per second).
#[derive(Debug, Clone, Copy)]
pub struct ProviderSample {
    /// `terraform apply` of N `terraform_data`.
    pub data_apply: f64,
    /// No-change `terraform plan` of N `terraform_data`.
    pub data_plan: f64,
    /// `terraform apply` of the same shape in `terraform_data` (N + N referencing them).
    pub shape_apply: f64,
    /// No-change `terraform plan` of that.
    pub shape_plan: f64,
    /// `terraform apply` of N hostnames with N tunnels.
    pub postern_apply: f64,
    /// No-change `terraform plan` of them.
    pub postern_plan: f64,
    /// Control API: tunnels created per second.
    pub api_creates_per_s: f64,
}

/// Runs one repetition of (f) with `n` hostnames; blocking (terraform is a process).
/// Panics (caught by the caller) when terraform fails.
pub fn sample(edge: &EdgeProcess, n: usize, rep: usize) -> ProviderSample {
    let (data_apply, data_plan) = data_run(n, rep);
    let (shape_apply, shape_plan) = shape_run(n, rep);
    let (postern_apply, postern_plan) = postern_run(edge, n, rep);
    let api_creates_per_s = api_creates(edge, 4 * n, rep);
    ProviderSample {
        data_apply,
        data_plan,
        shape_apply,
        shape_plan,
        postern_apply,
        postern_plan,
        api_creates_per_s,
    }
}

fn timed(tf: &Terraform, args: &[&str], expect_code: i32) -> f64 {
    let start = Instant::now();
    let run = tf.run(args);
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(
        run.code,
        expect_code,
        "terraform {} exited {}:\n{}",
        args.join(" "),
        run.code,
        run.all()
    );
    seconds
}

fn apply_and_plan(tf: &Terraform) -> (f64, f64) {
    let apply = timed(
        tf,
        &["apply", "-auto-approve", "-no-color", "-input=false"],
        0,
    );
    // -detailed-exitcode: 0 means "no changes"; 2 would be a diff (and a failed run here).
    let plan = timed(
        tf,
        &["plan", "-detailed-exitcode", "-no-color", "-input=false"],
        0,
    );
    (apply, plan)
}

fn data_run(count: usize, rep: usize) -> (f64, f64) {
    let tf = Terraform::offline();
    tf.write(
        "main.tf",
        &format!(
            "resource \"terraform_data\" \"d\" {{\n  count = {count}\n  input = \"r{rep}-${{count.index}}\"\n}}\n"
        ),
    );
    tf.init();
    apply_and_plan(&tf)
}

fn shape_run(count: usize, rep: usize) -> (f64, f64) {
    let tf = Terraform::offline();
    tf.write(
        "main.tf",
        &format!(
            r#"resource "terraform_data" "t" {{
  count = {count}
  input = "r{rep}-t${{count.index}}"
}}

resource "terraform_data" "h" {{
  count = {count}
  input = "r{rep}-h${{count.index}}.example.com ${{terraform_data.t[count.index].id}}"
}}
"#
        ),
    );
    tf.init();
    apply_and_plan(&tf)
}

fn postern_run(edge: &EdgeProcess, count: usize, rep: usize) -> (f64, f64) {
    let tf = Terraform::new(edge);
    tf.write(
        "main.tf",
        &format!(
            r#"{REQUIRED_PROVIDERS}
provider "postern" {{}}

resource "postern_tunnel" "t" {{
  count = {count}
  name  = "r{rep}-t${{count.index}}"
}}

resource "postern_hostname" "h" {{
  count     = {count}
  hostname  = "r{rep}-h${{count.index}}.example.com"
  service   = "http://127.0.0.1:9"
  tunnel_id = postern_tunnel.t[count.index].id
}}
"#
        ),
    );
    tf.init();
    apply_and_plan(&tf)
}

/// Creates `count` tunnels through the API with 8 concurrent clients; creates per second.
fn api_creates(edge: &EdgeProcess, count: usize, rep: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the API clients");
    let client = edge.client();
    runtime.block_on(async move {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let client = client.clone();
            tasks.spawn(async move {
                let mut index = worker;
                while index < count {
                    client
                        .create_tunnel(&TunnelSpec {
                            name: format!("api-r{rep}-{index}"),
                            labels: BTreeMap::new(),
                        })
                        .await
                        .expect("POST /v1/tunnels");
                    index += 8;
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        count as f64 / start.elapsed().as_secs_f64().max(1e-9)
    })
}
