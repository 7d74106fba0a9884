//! Tests that need addresses loopback does not have (a whole IPv6 /64 of clients) run in a
//! network namespace of their own: [`in_network_namespace`] moves a fresh thread into a new
//! namespace, brings its loopback up, routes a /64 to it as local, and runs the test there on a
//! runtime of its own. Every socket the test opens, and every process it starts (an edge, a
//! connector), lives in that namespace, which disappears with them.

use std::future::Future;
use std::process::Command;

/// Runs `test` in a new network namespace in which each of `prefixes` (`fd00:23::` for
/// `fd00:23::/64`) is local: a socket may bind any address of them (see
/// [`crate::visitor::connect_from`]). Panics, saying why, when the namespace cannot be made:
/// it takes root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the `ip` tool.
pub fn in_network_namespace<F, Fut>(prefixes: &[&str], test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let prefixes: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
    let thread = std::thread::Builder::new()
        .name("netns-test".into())
        .spawn(move || {
            if let Err(error) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                panic!(
                    "this test needs a network namespace of its own (for an IPv6 /64 of client \
                     addresses) and could not make one: unshare(CLONE_NEWNET) failed: {error}. \
                     Run the tests as root (or with CAP_SYS_ADMIN and CAP_NET_ADMIN)"
                );
            }
            ip(&["link", "set", "lo", "up"]);
            for prefix in &prefixes {
                ip(&[
                    "-6",
                    "route",
                    "add",
                    "local",
                    &format!("{prefix}/64"),
                    "dev",
                    "lo",
                ]);
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the namespaced test");
            runtime.block_on(test());
        })
        .expect("spawning the namespaced test's thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `ip ARGS` (in the calling thread's namespace); panics, saying why, when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap_or_else(|error| {
        panic!(
            "this test sets up its network namespace with the `ip` tool (iproute2), which could \
             not run: {error}"
        )
    });
    assert!(
        output.status.success(),
        "`ip {}` failed in the test's network namespace: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
