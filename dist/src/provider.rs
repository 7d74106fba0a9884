//! The provider as Terraform installs it: the zip named the way Terraform expects, its
//! SHA256SUMS and manifest, and the two JSON documents of the provider network mirror protocol
//! (`index.json` lists the versions, `<VERSION>.json` each platform's zip with its hashes).
//!
//! The mirror lists each zip with its `zh:` hash, the SHA-256 of the zip file (the value
//! SHA256SUMS lists): Terraform checks the zip it downloads against it before installing.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The provider's source address: `registry.terraform.io/postern/postern`.
pub(crate) const HOSTNAME: &str = "registry.terraform.io";
/// The namespace part of the source address.
pub(crate) const NAMESPACE: &str = "postern";
/// The type part of the source address.
pub(crate) const TYPE: &str = "postern";
/// The plugin protocol the provider speaks.
const PROTOCOL_VERSION: &str = "6.0";

/// The executable's name inside the zip: `terraform-provider-postern_v<VERSION>`.
pub(crate) fn binary_name(version: &str) -> String {
    format!("terraform-provider-{TYPE}_v{version}")
}

/// `terraform-provider-postern_<VERSION>_<PLATFORM>.zip`.
pub(crate) fn zip_name(version: &str, platform: &str) -> String {
    format!("terraform-provider-{TYPE}_{version}_{platform}.zip")
}

/// `terraform-provider-postern_<VERSION>_SHA256SUMS`.
pub(crate) fn sums_name(version: &str) -> String {
    format!("terraform-provider-{TYPE}_{version}_SHA256SUMS")
}

/// `terraform-provider-postern_<VERSION>_manifest.json`.
pub(crate) fn manifest_name(version: &str) -> String {
    format!("terraform-provider-{TYPE}_{version}_manifest.json")
}

/// The release manifest the Terraform Registry reads: which plugin protocols it speaks.
pub(crate) fn manifest() -> String {
    let manifest = json!({
        "version": 1,
        "metadata": { "protocol_versions": [PROTOCOL_VERSION] },
    });
    format!("{manifest:#}\n")
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The `zh:` hash of a zip: the SHA-256 of the zip file.
pub(crate) fn zh_hash(zip: &[u8]) -> String {
    format!("zh:{}", sha256_hex(zip))
}

/// A SHA256SUMS file (the `sha256sum` format) for `files` (name, content), sorted by name.
pub(crate) fn sha256sums(files: &[(&str, &[u8])]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
        .collect();
    // Each line starts with the 64 ASCII hex digits of a SHA-256: sort by the name after them.
    lines.sort_by(|a, b| a[64..].cmp(&b[64..]));
    lines.concat()
}

/// The mirror's `index.json` for a provider with one version.
pub(crate) fn mirror_index(version: &str) -> String {
    let index = json!({ "versions": { version: {} } });
    format!("{index:#}\n")
}

/// The mirror's `<VERSION>.json`: for each platform, the zip's URL (relative to this document)
/// and its hashes.
pub(crate) fn mirror_version(archives: &[(&str, &str, Vec<String>)]) -> String {
    let archives: serde_json::Map<String, Value> = archives
        .iter()
        .map(|(platform, url, hashes)| {
            (
                (*platform).to_string(),
                json!({ "url": url, "hashes": hashes }),
            )
        })
        .collect();
    let document = json!({ "archives": archives });
    format!("{document:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_ones_terraform_and_the_registry_expect() {
        assert_eq!(binary_name("1.2.3"), "terraform-provider-postern_v1.2.3");
        assert_eq!(
            zip_name("1.2.3", "linux_amd64"),
            "terraform-provider-postern_1.2.3_linux_amd64.zip"
        );
        assert_eq!(
            sums_name("1.2.3"),
            "terraform-provider-postern_1.2.3_SHA256SUMS"
        );
        assert_eq!(
            manifest_name("1.2.3"),
            "terraform-provider-postern_1.2.3_manifest.json"
        );
    }

    #[test]
    fn the_manifest_says_protocol_6() {
        let manifest: Value = serde_json::from_str(&manifest()).expect("json");
        assert_eq!(
            manifest,
            json!({"version": 1, "metadata": {"protocol_versions": ["6.0"]}})
        );
    }

    #[test]
    fn zh_is_the_sha256_of_the_zip_and_sha256sums_lists_the_same() {
        // SHA-256("abc"), FIPS 180-2's example.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(zh_hash(b"abc"), format!("zh:{abc}"));
        assert_eq!(
            sha256sums(&[("b.zip", b"abc"), ("a.json", b"")]),
            format!(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.json\n{abc}  b.zip\n"
            )
        );
    }

    #[test]
    fn the_mirror_documents_follow_the_network_mirror_protocol() {
        let index: Value = serde_json::from_str(&mirror_index("1.2.3")).expect("json");
        assert_eq!(index, json!({"versions": {"1.2.3": {}}}));
        let version: Value = serde_json::from_str(&mirror_version(&[(
            "linux_amd64",
            "terraform-provider-postern_1.2.3_linux_amd64.zip",
            vec!["zh:00".into()],
        )]))
        .expect("json");
        assert_eq!(
            version,
            json!({"archives": {"linux_amd64": {
                "url": "terraform-provider-postern_1.2.3_linux_amd64.zip",
                "hashes": ["zh:00"],
            }}})
        );
    }
}
