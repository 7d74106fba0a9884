//! Locating (and building, once per test process) the workspace's binaries, so the tests work
//! on a fresh clone with nothing built beforehand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The directory cargo put this executable's profile in (`target/debug` or `target/release`).
fn profile_dir() -> PathBuf {
    // Test executables live in `<target>/<profile>/deps/`, binaries (the benchmark) in
    // `<target>/<profile>/`.
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        dir
    };
    if dir.as_os_str().is_empty() {
        workspace_root().join("target").join("debug")
    } else {
        dir
    }
}

/// The path of the workspace binary `name` (`postern-edge`, `postern`,
/// `terraform-provider-postern`), built first if this test process has not built it yet.
/// Panics with the build output when the build fails: nothing can be tested without it.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let package = match name {
        "postern-edge" => "postern-edge",
        "postern" => "postern-runtime",
        "terraform-provider-postern" => "terraform-provider-postern",
        other => panic!("unknown workspace binary {other}"),
    };
    let dir = profile_dir();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", name]);
    if release {
        command.arg("--release");
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(
        output.status.success(),
        "building {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    built.insert(name.to_string(), path.clone());
    path
}
