//! Every example under `examples/` is a working root module: `terraform fmt` finds nothing to
//! change, `terraform test` passes against a real edge, and after an apply a second plan is
//! empty. The snippets under `examples/{provider,resources,data-sources}` (they feed the
//! registry docs) are formatted too.

use std::path::Path;

use acceptance::binaries::workspace_root;
use acceptance::{EdgeProcess, Terraform};

const EXAMPLES: &[&str] = &[
    "quickstart",
    "canary",
    "policies",
    "gitops",
    "no-secrets-in-state",
];

fn copy_module(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("example dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let keep = name.ends_with(".tf") || name.ends_with(".tftest.hcl");
        if path.is_file() && keep {
            std::fs::copy(&path, to.join(&name)).expect("copy");
        }
    }
}

#[test]
fn examples_are_formatted() {
    let tf = Terraform::offline();
    let examples = workspace_root().join("examples");
    let run = tf.run(&[
        "fmt",
        "-check",
        "-recursive",
        "-diff",
        &examples.display().to_string(),
    ]);
    assert_eq!(run.code, 0, "terraform fmt would change:\n{}", run.all());
}

fn example_passes_terraform_test_and_plans_clean(name: &str) {
    let edge = EdgeProcess::start();
    let tf = Terraform::new(&edge);
    copy_module(&workspace_root().join("examples").join(name), tf.dir());
    tf.init();
    let test = tf.run(&["test", "-no-color"]);
    assert_eq!(
        test.code,
        0,
        "terraform test failed in {name}:\n{}",
        test.all()
    );
    assert!(test.stdout.contains("Success!"), "{}", test.stdout);
    // terraform test destroyed what it made: the edge is empty again.
    let client = edge.client();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        assert!(
            client.list_hostnames().await.expect("hostnames").is_empty(),
            "{name}: terraform test left hostnames"
        );
        assert!(
            client.list_tunnels(None).await.expect("tunnels").is_empty(),
            "{name}: terraform test left tunnels"
        );
    });

    let apply = tf.apply();
    assert_eq!(apply.code, 0, "apply of {name} failed:\n{}", apply.all());
    let again = tf.plan_exit_code();
    assert_eq!(
        again.code,
        0,
        "{name} does not plan clean after apply:\n{}",
        again.all()
    );
    let destroy = tf.run(&["destroy", "-auto-approve", "-no-color"]);
    assert_eq!(destroy.code, 0, "{}", destroy.all());
}

#[test]
fn quickstart_example_works() {
    example_passes_terraform_test_and_plans_clean(EXAMPLES[0]);
}

#[test]
fn canary_example_works() {
    example_passes_terraform_test_and_plans_clean(EXAMPLES[1]);
}

#[test]
fn policies_example_works() {
    example_passes_terraform_test_and_plans_clean(EXAMPLES[2]);
}

#[test]
fn gitops_example_works() {
    example_passes_terraform_test_and_plans_clean(EXAMPLES[3]);
}

#[test]
fn no_secrets_in_state_example_works() {
    example_passes_terraform_test_and_plans_clean(EXAMPLES[4]);
}
