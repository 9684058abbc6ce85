//! Image endpoints: list, get, delete, upload (unified tarball or split), aliases.

use std::collections::BTreeMap;
use std::path::Path;

use http::Method;
use serde_json::json;

use crate::cancel::CancelToken;
use crate::client::{encode_query, operation_from_envelope, parse_envelope, what, Client};
use crate::error::{check_name, Result};
use crate::operation::Operation;
use crate::transfer::{multipart, Part, Transfer};
use crate::types::{Image, ImageAlias};

/// Options of an image upload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageUpload {
    /// `X-LXD-filename` (defaults to the file's base name).
    pub filename: Option<String>,
    /// `X-LXD-public`.
    pub public: bool,
    /// `X-LXD-properties` (URL-query encoded).
    pub properties: BTreeMap<String, String>,
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_string())
}

impl Client {
    /// `GET /1.0/images?recursion=1`.
    pub async fn images(&self) -> Result<Vec<Image>> {
        self.sync_json(Method::GET, "/1.0/images?recursion=1", None, None)
            .await
            .map(|(v, _)| v)
    }

    /// `GET /1.0/images/{fingerprint}`.
    pub async fn image(&self, fingerprint: &str) -> Result<Image> {
        check_name(fingerprint)?;
        self.sync_json(
            Method::GET,
            &format!("/1.0/images/{fingerprint}"),
            None,
            None,
        )
        .await
        .map(|(v, _)| v)
    }

    /// `DELETE /1.0/images/{fingerprint}` → async operation.
    pub async fn delete_image(&self, fingerprint: &str) -> Result<Operation> {
        check_name(fingerprint)?;
        self.async_op(
            Method::DELETE,
            &format!("/1.0/images/{fingerprint}"),
            None,
            None,
        )
        .await
    }

    /// `POST /1.0/images` with a unified image tarball streamed from `file`
    /// (`Content-Type: application/octet-stream`). `progress` gets bytes sent / file size.
    /// Returns the image operation; its final `metadata.fingerprint` names the image.
    pub async fn upload_image<F: FnMut(Transfer)>(
        &self,
        file: &Path,
        opts: &ImageUpload,
        progress: F,
        cancel: &CancelToken,
    ) -> Result<Operation> {
        let filename = opts.filename.clone().unwrap_or_else(|| base_name(file));
        let mut headers = vec![
            ("content-type", "application/octet-stream".to_string()),
            ("x-lxd-filename", encode_query(&filename)),
            (
                "x-lxd-public",
                if opts.public { "1" } else { "0" }.to_string(),
            ),
        ];
        if !opts.properties.is_empty() {
            let props = opts
                .properties
                .iter()
                .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
                .collect::<Vec<_>>()
                .join("&");
            headers.push(("x-lxd-properties", props));
        }
        self.upload_op(
            "/1.0/images",
            &headers,
            vec![Part::File(file.to_path_buf())],
            progress,
            cancel,
        )
        .await
    }

    /// `POST /1.0/images` with a split image (multipart: `metadata` part then `rootfs`
    /// part, file names = base names). Returns the image operation.
    pub async fn upload_split_image<F: FnMut(Transfer)>(
        &self,
        metadata: &Path,
        rootfs: &Path,
        opts: &ImageUpload,
        progress: F,
        cancel: &CancelToken,
    ) -> Result<Operation> {
        let meta_name = base_name(metadata);
        let rootfs_name = base_name(rootfs);
        let boundary = format!("crostini-lxd-{:016x}", boundary_seed());
        let (content_type, parts) = multipart(
            &[
                ("metadata", &meta_name, metadata),
                ("rootfs", &rootfs_name, rootfs),
            ],
            &boundary,
        );
        let headers = vec![
            ("content-type", content_type),
            (
                "x-lxd-public",
                if opts.public { "1" } else { "0" }.to_string(),
            ),
        ];
        self.upload_op("/1.0/images", &headers, parts, progress, cancel)
            .await
    }

    pub(crate) async fn upload_op<F: FnMut(Transfer)>(
        &self,
        path: &str,
        headers: &[(&str, String)],
        parts: Vec<Part>,
        progress: F,
        cancel: &CancelToken,
    ) -> Result<Operation> {
        let w = what(&Method::POST, path);
        let raw = self
            .upload(Method::POST, path, headers, parts, progress, cancel)
            .await?;
        let env = parse_envelope(&raw, &w)?;
        operation_from_envelope(env, &w)
    }

    /// `POST /1.0/images/aliases {name, target, description}` (sync).
    pub async fn create_image_alias(
        &self,
        name: &str,
        fingerprint: &str,
        description: &str,
    ) -> Result<()> {
        check_name(fingerprint)?;
        if name.is_empty() {
            check_name(name)?;
        }
        self.sync_unit(
            Method::POST,
            "/1.0/images/aliases",
            Some(&json!({"name": name, "target": fingerprint, "description": description})),
            None,
        )
        .await
    }

    /// `GET /1.0/images/aliases/{name}` (alias names may contain `/`).
    pub async fn image_alias(&self, name: &str) -> Result<ImageAlias> {
        let path = alias_path(name)?;
        self.sync_json(Method::GET, &path, None, None)
            .await
            .map(|(v, _)| v)
    }

    /// `DELETE /1.0/images/aliases/{name}` (sync).
    pub async fn delete_image_alias(&self, name: &str) -> Result<()> {
        let path = alias_path(name)?;
        self.sync_unit(Method::DELETE, &path, None, None).await
    }
}

fn alias_path(name: &str) -> Result<String> {
    for part in name.split('/') {
        check_name(part)?;
    }
    Ok(format!("/1.0/images/aliases/{name}"))
}

fn boundary_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_path_allows_slashes_but_not_empty_parts() {
        assert_eq!(
            alias_path("debian/bookworm").unwrap(),
            "/1.0/images/aliases/debian/bookworm"
        );
        assert!(alias_path("").is_err());
        assert!(alias_path("a//b").is_err());
        assert!(alias_path("a/..").is_err());
    }

    #[test]
    fn image_sample_decodes() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/image.json"
        ))
        .unwrap();
        let env: crate::client::Envelope = serde_json::from_str(&text).unwrap();
        let img: Image = serde_json::from_value(env.metadata).unwrap();
        assert_eq!(img.architecture, "x86_64");
        assert_eq!(img.aliases[0].name, "crostini-test");
        assert_eq!(img.kind, "container");
        assert_eq!(img.properties.get("os").map(String::as_str), Some("Debian"));
    }
}
