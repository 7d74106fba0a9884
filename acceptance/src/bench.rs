//! The benchmark behind `cargo run --release -p acceptance --bin bench`: the same minimal
//! origin reached directly, through Postern (edge HTTP and HTTPS → tunnel → connector) and
//! through peer tunnels (rathole over TCP and TLS, bore, nginx), on loopback only, with the
//! workloads of the performance issue run interleaved (every target once per repetition, in
//! turn), reported as a Markdown table and a JSON file. It is a command, not a test: timed
//! results on a shared two-core machine belong in a report, never in an assertion.

pub mod load;
pub mod origin;
pub mod peers;
pub mod postern;
pub mod procs;
pub mod provider;
pub mod report;
pub mod run;
