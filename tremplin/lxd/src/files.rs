//! Container file API (`/1.0/instances/{name}/files?path=`).

use http::Method;

use crate::client::{empty_body, encode_query, full_body, parse_envelope, what, Client};
use crate::error::{check_name, LxdError, Result};

/// Ownership and permission bits of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
}

/// What `pull_file` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    File {
        content: Vec<u8>,
        meta: FileMeta,
    },
    Directory {
        entries: Vec<String>,
        meta: FileMeta,
    },
    Symlink {
        target: String,
        meta: FileMeta,
    },
}

fn files_path(name: &str, path: &str) -> Result<String> {
    check_name(name)?;
    if !path.starts_with('/') {
        return Err(LxdError::protocol(
            format!("file API on {name}"),
            format!("path {path:?} is not absolute"),
        ));
    }
    Ok(format!(
        "/1.0/instances/{name}/files?path={}",
        encode_query(path)
    ))
}

fn header_num(raw: &crate::client::RawResponse, name: &str, radix: u32, w: &str) -> Result<u32> {
    let v = raw
        .header(name)
        .ok_or_else(|| LxdError::protocol(w, format!("missing {name} header")))?;
    u32::from_str_radix(v.trim(), radix)
        .map_err(|e| LxdError::protocol(w, format!("bad {name} header {v:?}: {e}")))
}

impl Client {
    /// `GET /1.0/instances/{name}/files?path=` → file content, directory listing or
    /// symlink target, with uid/gid/mode.
    pub async fn pull_file(&self, name: &str, path: &str) -> Result<FileContent> {
        let url = files_path(name, path)?;
        let w = what(&Method::GET, &url);
        let raw = self
            .request_raw(Method::GET, &url, &[], empty_body(), self.timeout())
            .await?;
        if !raw.status.is_success() {
            parse_envelope(&raw, &w)?;
            return Err(LxdError::protocol(&w, format!("HTTP {}", raw.status)));
        }
        let meta = FileMeta {
            uid: header_num(&raw, "x-lxd-uid", 10, &w)?,
            gid: header_num(&raw, "x-lxd-gid", 10, &w)?,
            mode: header_num(&raw, "x-lxd-mode", 8, &w)?,
        };
        match raw.header("x-lxd-type").as_deref() {
            Some("directory") => {
                let env = parse_envelope(&raw, &w)?;
                let entries = serde_json::from_value(env.metadata).map_err(|e| LxdError::Json {
                    what: w.clone(),
                    source: e,
                })?;
                Ok(FileContent::Directory { entries, meta })
            }
            Some("symlink") => Ok(FileContent::Symlink {
                target: String::from_utf8_lossy(&raw.body).into_owned(),
                meta,
            }),
            Some("file") | None => Ok(FileContent::File {
                content: raw.body.to_vec(),
                meta,
            }),
            Some(other) => Err(LxdError::protocol(
                &w,
                format!("unknown X-LXD-type {other:?}"),
            )),
        }
    }

    /// Writes (overwrites) a regular file with `content`, uid/gid/mode.
    pub async fn push_file(
        &self,
        name: &str,
        path: &str,
        content: Vec<u8>,
        meta: FileMeta,
    ) -> Result<()> {
        self.post_file(name, path, "file", content, meta).await
    }

    /// Creates a directory with uid/gid/mode (the parent must exist).
    pub async fn make_directory(&self, name: &str, path: &str, meta: FileMeta) -> Result<()> {
        self.post_file(name, path, "directory", Vec::new(), meta)
            .await
    }

    /// Deletes a file or (empty) directory.
    pub async fn delete_file(&self, name: &str, path: &str) -> Result<()> {
        let url = files_path(name, path)?;
        self.sync_unit(Method::DELETE, &url, None, None).await
    }

    async fn post_file(
        &self,
        name: &str,
        path: &str,
        kind: &str,
        content: Vec<u8>,
        meta: FileMeta,
    ) -> Result<()> {
        let url = files_path(name, path)?;
        let w = what(&Method::POST, &url);
        let headers = [
            ("content-type", "application/octet-stream".to_string()),
            ("x-lxd-uid", meta.uid.to_string()),
            ("x-lxd-gid", meta.gid.to_string()),
            ("x-lxd-mode", format!("{:04o}", meta.mode)),
            ("x-lxd-type", kind.to_string()),
            ("x-lxd-write", "overwrite".to_string()),
        ];
        let raw = self
            .request_raw(
                Method::POST,
                &url,
                &headers,
                full_body(content),
                self.timeout(),
            )
            .await?;
        parse_envelope(&raw, &w).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_path_encodes_and_requires_absolute() {
        assert_eq!(
            files_path("c1", "/tmp/a b").unwrap(),
            "/1.0/instances/c1/files?path=/tmp/a%20b"
        );
        assert!(files_path("c1", "relative").is_err());
        assert!(files_path("", "/x").is_err());
    }
}
