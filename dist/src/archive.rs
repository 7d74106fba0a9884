//! The two archive formats a release ships: a gzip'd tarball for the binaries, and the zip
//! Terraform installs a provider from. Every entry gets the same time, owner root and a fixed
//! mode, so the same inputs give byte-identical archives (and so the same hashes).

use std::collections::BTreeSet;
use std::io::{self, Cursor, Write};

use flate2::Compression;
use flate2::GzBuilder;
use time::OffsetDateTime;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// One file to archive: its path inside the archive (`/`-separated), mode and content.
#[derive(Debug, Clone)]
pub(crate) struct File {
    pub(crate) path: String,
    pub(crate) mode: u32,
    pub(crate) bytes: Vec<u8>,
}

impl File {
    /// A file anyone may read (0644).
    pub(crate) fn regular(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode: 0o644,
            bytes,
        }
    }

    /// A program (0755).
    pub(crate) fn executable(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode: 0o755,
            bytes,
        }
    }
}

/// A `.tar.gz` of `files` below the directory `top`, with an entry for each directory.
pub(crate) fn tar_gz(top: &str, files: &[File], epoch: i64) -> io::Result<Vec<u8>> {
    // Tar keeps whole seconds from 1970 on; a time before that says nothing useful.
    let mtime = u64::try_from(epoch).unwrap_or(0);
    let gzip = GzBuilder::new().write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gzip);
    let mut dirs = BTreeSet::new();
    dirs.insert(top.to_string());
    for file in files {
        let mut parent = file.path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            dirs.insert(format!("{top}/{dir}"));
            parent = dir;
        }
    }
    for dir in &dirs {
        let mut header = header(tar::EntryType::Directory, 0o755, 0, mtime);
        tar.append_data(&mut header, format!("{dir}/"), io::empty())?;
    }
    for file in files {
        let size = u64::try_from(file.bytes.len()).unwrap_or(u64::MAX);
        let mut header = header(tar::EntryType::Regular, file.mode, size, mtime);
        let path = format!("{top}/{}", file.path);
        tar.append_data(&mut header, path, file.bytes.as_slice())?;
    }
    tar.into_inner()?.finish()
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    // Only fails for names longer than the field; these are constants that fit.
    let _ = header.set_username("root");
    let _ = header.set_groupname("root");
    header
}

/// A zip of `files` (deflated, Unix modes kept).
pub(crate) fn zip(files: &[File], epoch: i64) -> zip::result::ZipResult<Vec<u8>> {
    let modified = zip_time(epoch);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for file in files {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(modified)
            .unix_permissions(file.mode)
            .large_file(file.bytes.len() >= 0xFFFF_FFFF);
        zip.start_file(file.path.as_str(), options)?;
        zip.write_all(&file.bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// `epoch` as a zip time (UTC), which counts from 1980 to 2107: earlier or later times clamp.
fn zip_time(epoch: i64) -> DateTime {
    let at = OffsetDateTime::from_unix_timestamp(epoch).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let year = u16::try_from(at.year()).unwrap_or(1980);
    DateTime::from_date_and_time(
        year,
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
    )
    .unwrap_or_else(|_| {
        if year < 1980 {
            DateTime::default()
        } else {
            DateTime::from_date_and_time(2107, 12, 31, 23, 59, 58).unwrap_or_default()
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn files() -> Vec<File> {
        vec![
            File::executable("bin", b"#!/bin/sh\necho hi\n".to_vec()),
            File::regular("docs/man/page.1", b".TH PAGE 1\n".to_vec()),
        ]
    }

    #[test]
    fn the_tarball_holds_every_file_below_its_top_directory_with_its_mode_and_time() {
        let bytes = tar_gz("top_1.0", &files(), 1_700_000_000).expect("tar");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let header = entry.header().clone();
            let path = entry.path().expect("path").display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("read");
            assert_eq!(header.mtime().expect("mtime"), 1_700_000_000);
            assert_eq!(header.uid().expect("uid"), 0);
            seen.push((path, header.mode().expect("mode"), content.len()));
        }
        assert_eq!(
            seen,
            [
                ("top_1.0/".to_string(), 0o755, 0),
                ("top_1.0/docs/".to_string(), 0o755, 0),
                ("top_1.0/docs/man/".to_string(), 0o755, 0),
                ("top_1.0/bin".to_string(), 0o755, 18),
                ("top_1.0/docs/man/page.1".to_string(), 0o644, 11),
            ]
        );
    }

    #[test]
    fn the_same_files_give_the_same_bytes() {
        assert_eq!(
            tar_gz("t", &files(), 5).expect("tar"),
            tar_gz("t", &files(), 5).expect("tar")
        );
        assert_eq!(
            zip(&files(), 1_700_000_000).expect("zip"),
            zip(&files(), 1_700_000_000).expect("zip")
        );
    }

    #[test]
    fn the_zip_keeps_content_unix_mode_and_time() {
        let bytes = zip(&files(), 1_700_000_000).expect("zip");
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("open");
        let mut bin = archive.by_name("bin").expect("bin");
        assert_eq!(bin.unix_mode().map(|m| m & 0o777), Some(0o755));
        let modified = bin.last_modified().expect("time");
        // 1_700_000_000 is 2023-11-14 22:13:20 UTC.
        assert_eq!(
            (
                modified.year(),
                modified.month(),
                modified.day(),
                modified.hour()
            ),
            (2023, 11, 14, 22)
        );
        let mut content = String::new();
        bin.read_to_string(&mut content).expect("read");
        assert_eq!(content, "#!/bin/sh\necho hi\n");
    }

    #[test]
    fn times_outside_the_zip_range_clamp_instead_of_failing() {
        assert_eq!(zip_time(0), DateTime::default());
        assert!(zip(&files(), 0).is_ok());
        assert!(zip(&files(), i64::MAX).is_ok());
    }
}
