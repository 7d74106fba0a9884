//! `PostgresServer`: a throwaway PostgreSQL cluster for tests, made with `initdb` in a temporary
//! directory and served on 127.0.0.1 with a free port (its unix socket stays in the same
//! directory); stopped and deleted when dropped.
//!
//! The server binaries are found through `pg_config --bindir`, then under
//! `/usr/lib/postgresql/*/bin`, then on `PATH`. PostgreSQL refuses to run as root, so when the
//! tests run as root (as they do on the project's machines) `initdb`, `pg_ctl` and the server run
//! as the unprivileged `postgres` user (or `nobody` where there is none), owning the directory.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};

use crate::pki::ServerCert;

/// The superuser `initdb` creates; the tests connect as it, without a password (`trust` auth on
/// loopback and the private socket directory only).
pub const SUPERUSER: &str = "postern";

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_WAIT: Duration = Duration::from_secs(60);

/// A running throwaway PostgreSQL server.
pub struct PostgresServer {
    bin_dir: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    run_as: Option<(Uid, Gid)>,
    running: bool,
    paused: bool,
    /// More `-c` settings for the server (TLS).
    settings: String,
}

impl PostgresServer {
    /// Makes a new cluster and starts it. Panics with an explanation when the PostgreSQL server
    /// binaries are missing or the server does not start: no test can run without it.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`PostgresServer::start`], with `ssl = on` and this certificate, and a
    /// `pg_hba.conf` that takes TCP connections over TLS only (`hostssl`).
    pub fn start_tls(cert: &ServerCert) -> Self {
        Self::start_with(Some(cert))
    }

    fn start_with(tls: Option<&ServerCert>) -> Self {
        let bin_dir = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found: \
                 looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH. Install them \
                 (Debian: apt-get install postgresql) to run the PostgreSQL tests"
            )
        });
        let run_as = unprivileged_user();
        let dir = if run_as.is_some() {
            // The unprivileged user must be able to reach the directory: /tmp is world-searchable,
            // whereas TMPDIR might point into root's home.
            tempfile::Builder::new()
                .prefix("postern-pg-")
                .tempdir_in("/tmp")
        } else {
            tempfile::Builder::new().prefix("postern-pg-").tempdir()
        }
        .expect("creating a temporary directory for PostgreSQL");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid.as_raw()), Some(gid.as_raw()))
                .expect("handing the PostgreSQL directory to the unprivileged user");
        }
        let mut server = Self {
            bin_dir,
            dir,
            port: 0,
            run_as,
            running: false,
            paused: false,
            settings: String::new(),
        };
        let initdb = server.run(
            "initdb",
            &[
                "--pgdata",
                &server.data_dir().display().to_string(),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        assert!(
            initdb.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        if let Some(cert) = tls {
            server.use_tls(cert);
        }
        // Another process may take the free port between our probe and the server's bind: try a
        // few ports before giving up.
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// Writes the certificate and key into the data directory (owned by the server's user, the
    /// key readable by it only) and a `pg_hba.conf` with `hostssl` lines only.
    fn use_tls(&mut self, cert: &ServerCert) {
        let data = self.data_dir();
        let write = |name: &str, text: &str, mode: u32| {
            let path = data.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {name}: {e}"));
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid.as_raw()), Some(gid.as_raw()))
                    .unwrap_or_else(|e| panic!("chown {name}: {e}"));
            }
        };
        write("server.crt", &cert.cert_pem, 0o644);
        write("server.key", &cert.key_pem, 0o600);
        write(
            "pg_hba.conf",
            "# TCP only over TLS; the private socket directory for the test's own checks.\n\
             local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n",
            0o600,
        );
        self.settings =
            " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".to_string();
    }

    /// The URL the edge takes with `--store`.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: open connections are closed), keeping its data.
    pub fn stop(&mut self) {
        if self.paused {
            self.resume();
        }
        let output = self.pg_ctl_stop("fast");
        assert!(
            output.status.success(),
            "pg_ctl stop failed:\n{}{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        self.running = false;
    }

    /// Starts the stopped server again on the same port with the same data.
    pub fn restart(&mut self) {
        if let Err(error) = self.try_start() {
            panic!("PostgreSQL did not start again: {error}");
        }
    }

    /// Whether the server is meant to be up.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Freezes the server and every backend (SIGSTOP): connections stay open and new ones are
    /// accepted by the kernel, but nothing answers, as with a hung host or a lost network.
    pub fn pause(&mut self) {
        // The postmaster first, so that it forks no backend we would miss.
        for pid in self.server_pids() {
            let _ = kill(pid, Signal::SIGSTOP);
        }
        self.paused = true;
    }

    /// Lets a paused server run again.
    pub fn resume(&mut self) {
        for pid in self.server_pids() {
            let _ = kill(pid, Signal::SIGCONT);
        }
        self.paused = false;
    }

    /// The postmaster and its children.
    fn server_pids(&self) -> Vec<Pid> {
        let postmaster = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .next()
                    .and_then(|l| l.trim().parse::<i32>().ok())
            })
            .expect("the server wrote no postmaster.pid");
        let mut pids = vec![Pid::from_raw(postmaster)];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            // `/proc/<pid>/stat` is `pid (comm) state ppid …`; comm may contain spaces.
            let parent = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                });
            if parent == Some(postmaster) {
                pids.push(Pid::from_raw(pid));
            }
        }
        pids
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn try_start(&mut self) -> Result<(), String> {
        let socket_dir = self.dir.path().display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {socket_dir} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=100 \
             -c shared_buffers=16MB{}",
            self.port, self.settings
        );
        let output = self.run(
            "pg_ctl",
            &[
                "start",
                "--wait",
                "--timeout",
                &PG_CTL_WAIT.as_secs().to_string(),
                "--pgdata",
                &self.data_dir().display().to_string(),
                "--log",
                &self.log_file().display().to_string(),
                "-o",
                &options,
            ],
        );
        if output.status.success() {
            self.running = true;
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start failed:\n{}{}\nserver log:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                self.log()
            ))
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Output {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "--wait",
                "--timeout",
                &PG_CTL_WAIT.as_secs().to_string(),
                "--mode",
                mode,
                "--pgdata",
                &self.data_dir().display().to_string(),
            ],
        )
    }

    /// Runs one of the server binaries, as the unprivileged user when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST");
        if let Some((uid, gid)) = self.run_as {
            // std clears the supplementary groups when root drops to another uid.
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        if self.running {
            let _ = self.pg_ctl_stop("immediate");
        }
    }
}

/// The directory with `initdb`, `pg_ctl` and `postgres`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|name| dir.join(name).is_file())
    };
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .collect();
    // Newest major version first.
    debian.sort_by_key(|dir| {
        std::cmp::Reverse(
            dir.parent()
                .and_then(Path::file_name)
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    from_pg_config
        .into_iter()
        .chain(debian)
        .chain(on_path)
        .find(|dir| has_all(dir))
}

/// `None` when not root; otherwise the user to run PostgreSQL as.
fn unprivileged_user() -> Option<(Uid, Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = ["postgres", "nobody"]
        .iter()
        .find_map(|name| User::from_name(name).ok().flatten())
        .expect(
            "running as root, and neither a `postgres` nor a `nobody` user exists to run \
             PostgreSQL as (it refuses to run as root)",
        );
    Some((user.uid, user.gid))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("finding a free port on 127.0.0.1")
}
