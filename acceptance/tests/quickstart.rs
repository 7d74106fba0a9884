//! The README's first command, run the way CI runs it: non-interactively, twice in a row (the
//! second run picks up the first one's state), ending with the origin's answer fetched through
//! the edge, and leaving nothing running.

use std::path::Path;
use std::process::Command;

use acceptance::binaries::workspace_root;
use acceptance::terraform::require_terraform;

fn run_quickstart(dir: &Path) -> String {
    let output = Command::new(workspace_root().join("examples/quickstart/run.sh"))
        .env("POSTERN_QUICKSTART_DIR", dir)
        .env("POSTERN_QUICKSTART_EXIT", "1")
        // The tests already built the debug binaries; the README's command builds release.
        .env("POSTERN_QUICKSTART_PROFILE", "debug")
        .env_remove("POSTERN_ENDPOINT")
        .env_remove("POSTERN_API_TOKEN")
        .output()
        .expect("running examples/quickstart/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the quickstart failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn running(pid_file: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    Path::new("/proc").join(pid.trim()).exists()
}

#[test]
fn the_quickstart_serves_a_request_through_the_edge_twice_and_cleans_up() {
    require_terraform();
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("quickstart");
    for round in 1..=2 {
        let out = run_quickstart(&dir);
        if round == 2 {
            // The second run picked up the first one's store and state: nothing to create.
            assert!(
                out.contains("No changes."),
                "round 2 re-created objects:\n{out}"
            );
        }
        assert!(
            out.contains("6/6 a request through the edge"),
            "round {round}:\n{out}"
        );
        assert!(
            out.contains("Hello from postern!") && out.contains("host: hello.example.com"),
            "round {round}: the origin's answer is missing:\n{out}"
        );
        assert!(
            out.contains("everything is stopped"),
            "round {round}:\n{out}"
        );
        for name in ["edge.pid", "connector.pid"] {
            assert!(
                !running(&dir.join(name)),
                "round {round}: {name} still running"
            );
        }
    }
}
