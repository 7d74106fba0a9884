//! `postern-dist`: writes one release of Postern into a directory, from binaries already built
//! (`scripts/dist` builds them, then runs this): the tarball, the provider's zip with its
//! SHA256SUMS and manifest, and a Terraform provider network-mirror tree. The version is this
//! crate's, which is the workspace's (`[workspace.package] version`).

mod archive;
mod pages;
mod provider;
mod release;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Writes a release of Postern: `postern_<VERSION>_<OS>_<ARCH>.tar.gz` (both binaries, LICENSE,
/// README, CHANGELOG, shell completions, man pages, systemd units), the provider's zip,
/// SHA256SUMS and manifest, and `mirror/`, a Terraform provider network mirror that any static
/// HTTPS server can host.
#[derive(Debug, Parser)]
#[command(name = "postern-dist", version, about, long_about = None)]
struct Args {
    /// The directory holding the built `postern-edge`, `postern` and
    /// `terraform-provider-postern` (for example target/release).
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Where to write the release; what it held before is removed.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The repository's root: LICENSE, README.md, CHANGELOG.md and dist/systemd/ come from it.
    #[arg(long, value_name = "DIR")]
    source_dir: PathBuf,
    /// The time given to every file in the archives and the man pages' date, in seconds since
    /// 1970 (the same binaries then give byte-identical archives, so the same hashes).
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    epoch: i64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let inputs = release::Inputs {
        bin_dir: args.bin_dir,
        source_dir: args.source_dir,
        epoch: args.epoch,
    };
    match release::write(&inputs, &args.out) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
