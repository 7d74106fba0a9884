//! One release, laid out in a directory:
//!
//! ```text
//! postern_<V>_<OS>_<ARCH>.tar.gz                 postern_<V>_<OS>_<ARCH>/{postern-edge, postern,
//!                                                LICENSE, README.md, CHANGELOG.md, completions/,
//!                                                man/, systemd/}
//! postern_<V>_SHA256SUMS                         the tarball's checksum
//! terraform-provider-postern_<V>_<OS>_<ARCH>.zip terraform-provider-postern_v<V>
//! terraform-provider-postern_<V>_SHA256SUMS      the zip's and the manifest's checksums
//! terraform-provider-postern_<V>_manifest.json   protocol version 6
//! mirror/registry.terraform.io/postern/postern/  index.json, <V>.json, the zip
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::CommandFactory;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::archive::{self, File};
use crate::{pages, provider};

/// The release's version: the workspace's.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a release is made from.
#[derive(Debug)]
pub(crate) struct Inputs {
    /// Where the built binaries are.
    pub(crate) bin_dir: PathBuf,
    /// The repository's root.
    pub(crate) source_dir: PathBuf,
    /// The time stamped on archived files, seconds since 1970.
    pub(crate) epoch: i64,
}

/// Writes the release into `out` (emptied first) and returns the paths written, top level first.
pub(crate) fn write(inputs: &Inputs, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let platform = platform(std::env::consts::OS, std::env::consts::ARCH)?;
    let edge = read_binary(&inputs.bin_dir, "postern-edge", true)?;
    let connector = read_binary(&inputs.bin_dir, "postern", true)?;
    let plugin = read_binary(&inputs.bin_dir, "terraform-provider-postern", false)?;

    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    let mut written = Vec::new();
    let mut put = |path: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };

    let top = format!("postern_{VERSION}_{platform}");
    let tarball_name = format!("{top}.tar.gz");
    let tarball = archive::tar_gz(&top, &tarball_files(inputs, edge, connector)?, inputs.epoch)
        .context("making the tarball")?;
    put(out.join(&tarball_name), &tarball)?;
    put(
        out.join(format!("postern_{VERSION}_SHA256SUMS")),
        provider::sha256sums(&[(&tarball_name, &tarball)]).as_bytes(),
    )?;

    let binary_name = provider::binary_name(VERSION);
    let zip_name = provider::zip_name(VERSION, &platform);
    let zip = archive::zip(&[File::executable(binary_name, plugin)], inputs.epoch)
        .context("making the provider's zip")?;
    let manifest = provider::manifest();
    let manifest_name = provider::manifest_name(VERSION);
    put(out.join(&zip_name), &zip)?;
    put(out.join(&manifest_name), manifest.as_bytes())?;
    put(
        out.join(provider::sums_name(VERSION)),
        provider::sha256sums(&[(&zip_name, &zip), (&manifest_name, manifest.as_bytes())])
            .as_bytes(),
    )?;

    let mirror = out
        .join("mirror")
        .join(provider::HOSTNAME)
        .join(provider::NAMESPACE)
        .join(provider::TYPE);
    put(
        mirror.join("index.json"),
        provider::mirror_index(VERSION).as_bytes(),
    )?;
    let hashes = vec![provider::zh_hash(&zip)];
    put(
        mirror.join(format!("{VERSION}.json")),
        provider::mirror_version(&[(&platform, &zip_name, hashes)]).as_bytes(),
    )?;
    put(mirror.join(&zip_name), &zip)?;
    Ok(written)
}

/// Terraform's name for a platform: `linux_amd64`, `darwin_arm64`, ...
fn platform(os: &str, arch: &str) -> anyhow::Result<String> {
    let os = match os {
        "linux" => "linux",
        "macos" => "darwin",
        "freebsd" => "freebsd",
        other => bail!("no release for the operating system {other}"),
    };
    let arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => bail!("no release for the CPU architecture {other}"),
    };
    Ok(format!("{os}_{arch}"))
}

/// Reads a built binary; with `check_version`, runs `NAME --version` first and refuses a binary
/// of another version than this release's (a stale build in the directory).
fn read_binary(dir: &Path, name: &str, check_version: bool) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (scripts/dist does)",
            path.display()
        );
    }
    if check_version {
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", path.display()))?;
        let said = String::from_utf8_lossy(&output.stdout);
        let expected = format!("{name} {VERSION}");
        if !output.status.success() || said.trim() != expected {
            bail!(
                "{} --version says {:?}, not {expected:?}: rebuild it",
                path.display(),
                said.trim()
            );
        }
    }
    fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Everything in the tarball but its top directory.
fn tarball_files(inputs: &Inputs, edge: Vec<u8>, connector: Vec<u8>) -> anyhow::Result<Vec<File>> {
    let mut files = vec![
        File::executable("postern-edge", edge),
        File::executable("postern", connector),
    ];
    for name in ["LICENSE", "README.md", "CHANGELOG.md"] {
        files.push(File::regular(name, read(&inputs.source_dir.join(name))?));
    }
    let units = inputs.source_dir.join("dist").join("systemd");
    let mut unit_names: Vec<_> = fs::read_dir(&units)
        .with_context(|| format!("reading {}", units.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.file_name()))
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".service"))
        .collect();
    unit_names.sort();
    if unit_names.is_empty() {
        bail!("{} holds no systemd unit", units.display());
    }
    for name in unit_names {
        let bytes = read(&units.join(&name))?;
        files.push(File::regular(format!("systemd/{name}"), bytes));
    }

    let date = man_date(inputs.epoch);
    for cmd in [
        postern_edge::EdgeConfig::command(),
        postern_runtime::config::Cli::command(),
    ] {
        files.extend(pages::completions(&cmd));
        files.extend(pages::man_pages(&cmd, &date).context("rendering the man pages")?);
    }
    Ok(files)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `epoch` as the man pages' date, YYYY-MM-DD (UTC).
fn man_date(epoch: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp(epoch).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_named_as_terraform_names_them() {
        assert_eq!(platform("linux", "x86_64").expect("linux"), "linux_amd64");
        assert_eq!(platform("macos", "aarch64").expect("mac"), "darwin_arm64");
        let error = platform("linux", "riscv64").expect_err("riscv");
        assert!(error.to_string().contains("riscv64"), "{error}");
    }

    #[test]
    fn the_man_date_is_the_epoch_day_in_utc() {
        assert_eq!(man_date(1_700_000_000), "2023-11-14");
        assert_eq!(man_date(0), "1970-01-01");
    }

    #[test]
    fn a_missing_binary_says_to_build_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = read_binary(dir.path(), "postern", true).expect_err("missing");
        assert!(error.to_string().contains("build it first"), "{error}");
    }

    #[test]
    fn a_binary_of_another_version_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postern");
        fs::write(&path, "#!/bin/sh\necho postern 0.0.0-old\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        let error = read_binary(dir.path(), "postern", true).expect_err("stale");
        assert!(error.to_string().contains("0.0.0-old"), "{error}");
    }
}
