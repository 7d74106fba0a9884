//! The release files `scripts/dist` writes (issue 26), used the way a team uses them:
//!
//! - Must show 1, `terraform_installs_the_provider_from_the_mirror_over_https`: `mirror/` served
//!   over HTTPS on loopback (a certificate made here, trusted through `SSL_CERT_FILE`);
//!   `terraform init` with a `network_mirror` block and no other installation method installs
//!   the provider from it, checked against the mirror's `zh:` hash, which is the zip's line in
//!   `SHA256SUMS` (a zip changed by one byte is refused, naming that hash); the installed
//!   provider runs (`terraform validate` loads its schema); and `terraform providers lock
//!   -net-mirror` pins the package that init installed. (Terraform records a mirror's `zh:`
//!   hashes in the lock file only when a registry signed them; from an unsigned mirror the lock
//!   file holds the `h1:` hash Terraform computes from the package it verified.)
//! - Must show 2, `the_tarball_runs_from_an_empty_directory_and_its_completions_load`: the tarball
//!   unpacked into an empty directory runs `postern-edge --version` and `postern --version`, its
//!   bash completions load (`complete -p`), and zsh, fish and man pages are there.
//! - Must show 3, `systemd_analyze_verify_accepts_both_units`: the units from the tarball,
//!   installed as docs/guides/deploy.md installs them into a scratch root, pass
//!   `systemd-analyze verify` without a warning (and it does notice a missing binary).
//!
//! The release comes from `scripts/dist --profile <this test's profile>`, run once per test
//! process into a temporary directory, so it is always made from the code under test. CI runs
//! `scripts/dist --profile dev` as a step of its own and points `POSTERN_DIST_DIR` at the result;
//! then the tests use that one.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use acceptance::binaries::workspace_root;
use acceptance::terraform::{PROVIDER_VERSION as VERSION, platform, require_terraform};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The release under test, made once per test process.
struct Dist {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

fn dist() -> &'static Path {
    // A failed scripts/dist is remembered, so the other tests report it instead of running it
    // again.
    static DIST: OnceLock<Result<Dist, String>> = OnceLock::new();
    let dist = DIST.get_or_init(|| {
        if let Some(dir) = std::env::var_os("POSTERN_DIST_DIR") {
            return Ok(Dist {
                dir: PathBuf::from(dir),
                _temp: None,
            });
        }
        let temp = tempfile::Builder::new()
            .prefix("postern-dist-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let dir = temp.path().join("dist");
        let output = Command::new(workspace_root().join("scripts/dist"))
            .args(["--profile", test_profile(), "--out"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("running scripts/dist: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "scripts/dist failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(Dist {
            dir,
            _temp: Some(temp),
        })
    });
    let dist = dist.as_ref().unwrap_or_else(|error| panic!("{error}"));
    assert!(
        dist.dir.join(tarball_name()).is_file(),
        "{} holds no {}: run scripts/dist (or unset POSTERN_DIST_DIR)",
        dist.dir.display(),
        tarball_name()
    );
    &dist.dir
}

/// `release` when this test was built with `--release` (it runs from `target/release/deps/`),
/// else `dev`.
fn test_profile() -> &'static str {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe.parent().and_then(Path::parent);
    if profile_dir.and_then(Path::file_name) == Some(std::ffi::OsStr::new("release")) {
        "release"
    } else {
        "dev"
    }
}

fn tarball_name() -> String {
    format!("postern_{VERSION}_{}.tar.gz", platform())
}

fn zip_name() -> String {
    format!("terraform-provider-postern_{VERSION}_{}.zip", platform())
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("running a command");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Unpacks the tarball into `into` (which the test made empty) and returns its top directory.
fn unpack(into: &Path) -> PathBuf {
    run(Command::new("tar")
        .arg("-xzf")
        .arg(dist().join(tarball_name()))
        .arg("-C")
        .arg(into));
    let entries: Vec<_> = std::fs::read_dir(into)
        .expect("read")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    let top = format!("postern_{VERSION}_{}", platform());
    assert_eq!(
        entries,
        [std::ffi::OsString::from(&top)],
        "the tarball unpacks into one directory"
    );
    into.join(top)
}

// === Must show 1: the provider from the network mirror ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_installs_the_provider_from_the_mirror_over_https() {
    require_terraform();
    let dist = dist();
    let sums = std::fs::read_to_string(
        dist.join(format!("terraform-provider-postern_{VERSION}_SHA256SUMS")),
    )
    .expect("SHA256SUMS");
    let zip_sum = sums
        .lines()
        .find_map(|line| line.strip_suffix(&format!("  {}", zip_name())))
        .unwrap_or_else(|| panic!("SHA256SUMS lists no {}:\n{sums}", zip_name()));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dist.join(format!(
            "terraform-provider-postern_{VERSION}_manifest.json"
        )))
        .expect("manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(
        manifest["metadata"]["protocol_versions"],
        serde_json::json!(["6.0"])
    );

    let scratch = tempfile::tempdir().expect("temp dir");
    let mirror = MirrorServer::start(dist.join("mirror"), scratch.path()).await;
    let url = format!("https://127.0.0.1:{}/", mirror.port);
    let work = scratch.path().join("work");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::create_dir_all(&home).expect("home dir");
    // The mirror is the only way in: no `direct {}`, no implied local mirror in this HOME.
    let cli_config = scratch.path().join("terraformrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  network_mirror {{\n    url     = \"{url}\"\n    include = [\"registry.terraform.io/postern/postern\"]\n  }}\n}}\n"
        ),
    )
    .expect("CLI config");
    std::fs::write(
        work.join("main.tf"),
        format!(
            "terraform {{\n  required_providers {{\n    postern = {{\n      source  = \"postern/postern\"\n      version = \"{VERSION}\"\n    }}\n  }}\n}}\n\nprovider \"postern\" {{\n  endpoint = \"http://127.0.0.1:9\"\n}}\n"
        ),
    )
    .expect("main.tf");
    let terraform = |args: &[&str]| {
        let mut command = Command::new("terraform");
        command
            .args(args)
            .current_dir(&work)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .env("SSL_CERT_FILE", &mirror.ca_file)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0");
        command
    };

    let init = run(&mut terraform(&["init", "-no-color"]));
    let init = String::from_utf8_lossy(&init.stdout);
    assert!(
        init.contains(&format!("Installed postern/postern v{VERSION}")),
        "{init}"
    );
    let installed = work
        .join(".terraform/providers/registry.terraform.io/postern/postern")
        .join(VERSION)
        .join(platform())
        .join(format!("terraform-provider-postern_v{VERSION}"));
    assert!(installed.is_file(), "{} is missing", installed.display());
    let requested = mirror.requested();
    for path in [
        "/registry.terraform.io/postern/postern/index.json".to_string(),
        format!("/registry.terraform.io/postern/postern/{VERSION}.json"),
        format!("/registry.terraform.io/postern/postern/{}", zip_name()),
    ] {
        assert!(
            requested.contains(&path),
            "terraform never asked the mirror for {path}: {requested:?}"
        );
    }
    // The installed provider runs: validate starts it and reads its schema over protocol 6.
    run(&mut terraform(&["validate", "-no-color"]));

    // The mirror names the zip by the hash SHA256SUMS lists.
    let listed: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dist.join("mirror/registry.terraform.io/postern/postern")
                .join(format!("{VERSION}.json")),
        )
        .expect("version document"),
    )
    .expect("version JSON");
    assert_eq!(
        listed["archives"][platform()]["hashes"],
        serde_json::json!([format!("zh:{zip_sum}")])
    );
    let installed_h1 =
        h1_hashes(&std::fs::read_to_string(work.join(".terraform.lock.hcl")).expect("lock"));
    assert_eq!(installed_h1.len(), 1, "init locks the package it installed");

    // `providers lock` against the mirror pins that same package.
    std::fs::remove_file(work.join(".terraform.lock.hcl")).expect("remove the lock file");
    let mirror_flag = format!("-net-mirror={url}");
    let platform_flag = format!("-platform={}", platform());
    run(&mut terraform(&[
        "providers",
        "lock",
        "-no-color",
        &mirror_flag,
        &platform_flag,
    ]));
    let lock = std::fs::read_to_string(work.join(".terraform.lock.hcl")).expect("lock file");
    assert!(
        lock.contains(&format!("version     = \"{VERSION}\"")),
        "{lock}"
    );
    assert_eq!(h1_hashes(&lock), installed_h1, "{lock}");

    // A zip that differs from the released one by a byte is refused: the check is the zh: hash.
    let tampered = scratch.path().join("tampered");
    copy_tree(&dist.join("mirror"), &tampered);
    let zip_path = tampered
        .join("registry.terraform.io/postern/postern")
        .join(zip_name());
    let mut zip = std::fs::read(&zip_path).expect("zip");
    let middle = zip.len() / 2;
    zip[middle] ^= 0xff;
    std::fs::write(&zip_path, zip).expect("write zip");
    let bad_scratch = scratch.path().join("bad");
    std::fs::create_dir_all(&bad_scratch).expect("dir");
    let bad_mirror = MirrorServer::start(tampered, &bad_scratch).await;
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  network_mirror {{\n    url = \"https://127.0.0.1:{}/\"\n  }}\n}}\n",
            bad_mirror.port
        ),
    )
    .expect("CLI config");
    std::fs::remove_file(work.join(".terraform.lock.hcl")).expect("remove the lock file");
    std::fs::remove_dir_all(work.join(".terraform")).expect("remove .terraform");
    let refused = terraform(&["init", "-no-color"])
        .env("SSL_CERT_FILE", &bad_mirror.ca_file)
        .output()
        .expect("terraform init");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a changed zip was installed");
    assert!(
        said.contains(zip_sum),
        "the refusal names the expected hash zh:{zip_sum}:\n{said}"
    );
}

/// The `h1:` hashes of a lock file, in order.
fn h1_hashes(lock: &str) -> Vec<String> {
    lock.lines()
        .filter_map(|line| line.trim().strip_prefix("\"h1:"))
        .map(|rest| rest.trim_end_matches([',', '"']).to_string())
        .collect()
}

/// A static HTTPS file server for a directory on 127.0.0.1, with a certificate for `localhost`
/// and 127.0.0.1 from a CA made here (its PEM is `ca_file`).
struct MirrorServer {
    port: u16,
    ca_file: PathBuf,
    requested: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MirrorServer {
    async fn start(root: PathBuf, scratch: &Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "postern release test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params")
                .signed_by(&key, &issuer)
                .expect("leaf");
        let ca_file = scratch.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requested = Arc::new(Mutex::new(BTreeSet::new()));
        let root = Arc::new(root);
        let task = {
            let requested = requested.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, root, requested) =
                        (acceptor.clone(), root.clone(), requested.clone());
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let service = service_fn(move |request| {
                            let (root, requested) = (root.clone(), requested.clone());
                            async move { Ok::<_, Infallible>(serve_file(&root, &requested, request)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self {
            port,
            ca_file,
            requested,
            task,
        }
    }

    fn requested(&self) -> BTreeSet<String> {
        self.requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn serve_file(
    root: &Path,
    requested: &Mutex<BTreeSet<String>>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    requested
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.clone());
    let relative = path.trim_start_matches('/');
    let answer = |status: StatusCode, kind: &str, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    if relative
        .split('/')
        .any(|part| part == ".." || part.is_empty())
    {
        return answer(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
    }
    match std::fs::read(root.join(relative)) {
        Ok(body) if path.ends_with(".json") => answer(StatusCode::OK, "application/json", body),
        Ok(body) => answer(StatusCode::OK, "application/zip", body),
        Err(_) => answer(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
    }
}

// === Must show 2: the tarball ===

#[test]
fn the_tarball_runs_from_an_empty_directory_and_its_completions_load() {
    let empty = tempfile::tempdir().expect("temp dir");
    let top = unpack(empty.path());

    for name in ["postern-edge", "postern"] {
        let output = run(Command::new(top.join(name)).arg("--version"));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("{name} {VERSION}")
        );
        let script = top.join(format!("completions/{name}.bash"));
        let output = run(Command::new("bash")
            .arg("--norc")
            .arg("-c")
            .arg(format!("source \"$1\" && complete -p {name}"))
            .arg("bash")
            .arg(&script));
        let complete = String::from_utf8_lossy(&output.stdout);
        assert!(
            complete.starts_with("complete ")
                && complete.contains(" -F ")
                && complete.trim_end().ends_with(&format!(" {name}")),
            "bash has no completion for {name} after sourcing {}: {complete}",
            script.display()
        );
        for other in [
            format!("completions/_{name}"),
            format!("completions/{name}.fish"),
        ] {
            let text = std::fs::read_to_string(top.join(&other)).expect(&other);
            assert!(text.contains("--help"), "{other} completes no flag");
        }
        let page = std::fs::read_to_string(top.join(format!("man/{name}.1"))).expect("man page");
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "man/{name}.1 is no man page"
        );
    }
    // The connector's subcommands have pages of their own; its flags carry their variables.
    let run_page =
        std::fs::read_to_string(top.join("man/postern-tunnel-run.1")).expect("tunnel run page");
    assert!(run_page.contains("POSTERN_TOKEN"), "{run_page}");
    let bash = std::fs::read_to_string(top.join("completions/postern.bash")).expect("bash");
    assert!(
        bash.contains("--token") && bash.contains("tunnel"),
        "{bash}"
    );

    for name in ["LICENSE", "README.md", "CHANGELOG.md"] {
        assert!(top.join(name).is_file(), "{name} is missing");
    }
    let license = std::fs::read_to_string(top.join("LICENSE")).expect("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    for unit in ["systemd/postern-edge.service", "systemd/postern@.service"] {
        assert!(top.join(unit).is_file(), "{unit} is missing");
    }
}

// === Must show 3: the systemd units ===

#[test]
fn systemd_analyze_verify_accepts_both_units() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "systemd-analyze is not on PATH: install Debian's systemd package (scripts/test does)"
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let unpacked = scratch.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("dir");
    let top = unpack(&unpacked);

    // A root laid out as docs/guides/deploy.md installs the release, with the distribution's own units
    // (targets, sockets) beside ours so that verify can resolve the dependencies.
    let root = scratch.path().join("root");
    let bin = root.join("usr/local/bin");
    let units = root.join("etc/systemd/system");
    let man = root.join("usr/local/share/man/man1");
    for dir in [&bin, &units, &man] {
        std::fs::create_dir_all(dir).expect("dir");
    }
    for name in ["postern-edge", "postern"] {
        std::fs::copy(top.join(name), bin.join(name)).expect("install binary");
    }
    let mut documented = Vec::new();
    for unit in ["postern-edge.service", "postern@.service"] {
        let text = std::fs::read_to_string(top.join("systemd").join(unit)).expect("unit");
        documented.extend(
            text.lines()
                .filter_map(|line| line.strip_prefix("Documentation=man:"))
                .filter_map(|page| page.strip_suffix("(1)"))
                .map(str::to_string),
        );
        std::fs::write(units.join(unit), text).expect("install unit");
    }
    for entry in std::fs::read_dir(top.join("man")).expect("man pages") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), man.join(entry.file_name())).expect("install page");
    }
    // The man pages the units name are in the release (verify's own man check would look in
    // the host's manual, not in the scratch root).
    assert_eq!(documented.len(), 2, "each unit names its man page");
    for page in &documented {
        assert!(
            man.join(format!("{page}.1")).is_file(),
            "the unit names man:{page}(1), which the release lacks"
        );
    }
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.join("sysinit.target").exists())
        .expect("the distribution's systemd units (/usr/lib/systemd/system)");
    copy_tree(system_units, &root.join("usr/lib/systemd/system"));

    let verify = |unit: &str| {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("--man=no")
            .arg(unit)
            .output()
            .expect("running systemd-analyze")
    };
    for unit in ["postern-edge.service", "postern@web.service"] {
        let output = verify(unit);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // verify exits 0 on unknown keys and unparsable values, so it must also say nothing.
        assert!(
            output.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {unit}:\n{said}"
        );
    }

    // It does look: without the binary the connector unit fails.
    std::fs::remove_file(bin.join("postern")).expect("remove");
    let output = verify("postern@web.service");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("/usr/local/bin/postern"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Copies a directory of files, symbolic links kept as links.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("link");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
