//! Instance endpoints: get/list/create/copy/rename/update/delete, state, metadata,
//! snapshots, logs.

use http::Method;
use serde_json::json;

use crate::client::{parse_envelope, what, Client};
use crate::error::{check_name, LxdError, Result};
use crate::operation::Operation;
use crate::types::{
    Instance, InstanceMetadata, InstancePut, InstanceSource, InstanceState, InstanceStatePut,
    InstancesPost, InstancesPostFields, Snapshot,
};

/// An `ETag` value as returned by LXD (pass back as `If-Match`).
pub type ETag = Option<String>;

impl InstancesPost {
    /// Container `name` from `source`, LXD defaults for everything else (default profile).
    pub fn new(name: &str, source: InstanceSource) -> Self {
        InstancesPost {
            name: name.to_string(),
            source,
            kind: "container".to_string(),
            put: InstancesPostFields::default(),
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| LxdError::Json {
        what: what.to_string(),
        source: e,
    })
}

/// Strips a snapshot URL (`/1.0/instances/c/snapshots/s`) down to its name.
pub fn snapshot_name(entry: &str) -> &str {
    let entry = entry.split('?').next().unwrap_or(entry);
    match entry.rfind("/snapshots/") {
        Some(i) => &entry[i + "/snapshots/".len()..],
        None => entry,
    }
}

impl Client {
    /// `GET /1.0/instances/{name}` → instance and ETag.
    pub async fn instance(&self, name: &str) -> Result<(Instance, ETag)> {
        check_name(name)?;
        self.sync_json(Method::GET, &format!("/1.0/instances/{name}"), None, None)
            .await
    }

    /// `GET /1.0/instances?recursion=1&instance-type=container`.
    pub async fn instances(&self) -> Result<Vec<Instance>> {
        self.sync_json(
            Method::GET,
            "/1.0/instances?recursion=1&instance-type=container",
            None,
            None,
        )
        .await
        .map(|(v, _)| v)
    }

    /// `GET /1.0/containers` (legacy list of URLs) → container names.
    pub async fn legacy_container_names(&self) -> Result<Vec<String>> {
        let (urls, _): (Vec<String>, _) = self
            .sync_json(Method::GET, "/1.0/containers", None, None)
            .await?;
        Ok(urls
            .iter()
            .filter_map(|u| u.split('?').next()?.rsplit('/').next())
            .map(str::to_string)
            .collect())
    }

    /// `POST /1.0/instances` → async operation.
    pub async fn create_instance(&self, req: &InstancesPost) -> Result<Operation> {
        check_name(&req.name)?;
        let body = to_json(req, "POST /1.0/instances")?;
        self.async_op(Method::POST, "/1.0/instances", Some(&body), None)
            .await
    }

    /// Local copy `source` → `target` (instance only, no snapshots), copying the writable
    /// fields of the source. Async operation.
    pub async fn copy_instance(&self, source: &str, target: &str) -> Result<Operation> {
        check_name(target)?;
        let (src, _) = self.instance(source).await?;
        let req = InstancesPost {
            name: target.to_string(),
            source: InstanceSource::copy_of(source),
            kind: String::new(),
            put: src.writable().into(),
        };
        self.create_instance(&req).await
    }

    /// `POST /1.0/instances/{name}` `{name: new_name}` → async operation.
    pub async fn rename_instance(&self, name: &str, new_name: &str) -> Result<Operation> {
        check_name(name)?;
        check_name(new_name)?;
        self.async_op(
            Method::POST,
            &format!("/1.0/instances/{name}"),
            Some(&json!({ "name": new_name })),
            None,
        )
        .await
    }

    /// `PUT /1.0/instances/{name}` with `If-Match` when `etag` is given → async operation.
    pub async fn update_instance(
        &self,
        name: &str,
        put: &InstancePut,
        etag: Option<&str>,
    ) -> Result<Operation> {
        check_name(name)?;
        let path = format!("/1.0/instances/{name}");
        let body = to_json(put, &format!("PUT {path}"))?;
        self.async_op(Method::PUT, &path, Some(&body), etag).await
    }

    /// `DELETE /1.0/instances/{name}` → async operation.
    pub async fn delete_instance(&self, name: &str) -> Result<Operation> {
        check_name(name)?;
        self.async_op(
            Method::DELETE,
            &format!("/1.0/instances/{name}"),
            None,
            None,
        )
        .await
    }

    /// `GET /1.0/instances/{name}/state`.
    pub async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        check_name(name)?;
        self.sync_json(
            Method::GET,
            &format!("/1.0/instances/{name}/state"),
            None,
            None,
        )
        .await
        .map(|(v, _)| v)
    }

    /// `PUT /1.0/instances/{name}/state` → async operation.
    pub async fn change_instance_state(
        &self,
        name: &str,
        state: &InstanceStatePut,
    ) -> Result<Operation> {
        check_name(name)?;
        let path = format!("/1.0/instances/{name}/state");
        let body = to_json(state, &format!("PUT {path}"))?;
        self.async_op(Method::PUT, &path, Some(&body), None).await
    }

    /// Start (`{action: start, timeout: -1}`) → async operation.
    pub async fn start_instance(&self, name: &str) -> Result<Operation> {
        self.change_instance_state(name, &InstanceStatePut::start())
            .await
    }

    /// Stop (`{action: stop, timeout: -1, force}`) → async operation.
    pub async fn stop_instance(&self, name: &str, force: bool) -> Result<Operation> {
        self.change_instance_state(name, &InstanceStatePut::stop(force))
            .await
    }

    /// `GET /1.0/instances/{name}/metadata` → metadata and ETag.
    pub async fn instance_metadata(&self, name: &str) -> Result<(InstanceMetadata, ETag)> {
        check_name(name)?;
        self.sync_json(
            Method::GET,
            &format!("/1.0/instances/{name}/metadata"),
            None,
            None,
        )
        .await
    }

    /// `PUT /1.0/instances/{name}/metadata` (sync) with `If-Match` when `etag` is given.
    pub async fn update_instance_metadata(
        &self,
        name: &str,
        metadata: &InstanceMetadata,
        etag: Option<&str>,
    ) -> Result<()> {
        check_name(name)?;
        let path = format!("/1.0/instances/{name}/metadata");
        let body = to_json(metadata, &format!("PUT {path}"))?;
        self.sync_unit(Method::PUT, &path, Some(&body), etag).await
    }

    /// Sets one metadata property (GET + PUT with ETag; creates the map if absent).
    pub async fn set_instance_metadata_property(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let (mut md, etag) = self.instance_metadata(name).await?;
        md.properties.insert(key.to_string(), value.to_string());
        self.update_instance_metadata(name, &md, etag.as_deref())
            .await
    }

    /// `GET /1.0/instances/{name}/snapshots` → snapshot names (URLs are reduced to names).
    pub async fn snapshot_names(&self, name: &str) -> Result<Vec<String>> {
        check_name(name)?;
        let (entries, _): (Vec<String>, _) = self
            .sync_json(
                Method::GET,
                &format!("/1.0/instances/{name}/snapshots"),
                None,
                None,
            )
            .await?;
        Ok(entries
            .iter()
            .map(|e| snapshot_name(e).to_string())
            .collect())
    }

    /// `GET /1.0/instances/{name}/snapshots/{snap}`.
    pub async fn snapshot(&self, name: &str, snap: &str) -> Result<Snapshot> {
        check_name(name)?;
        check_name(snap)?;
        self.sync_json(
            Method::GET,
            &format!("/1.0/instances/{name}/snapshots/{snap}"),
            None,
            None,
        )
        .await
        .map(|(v, _)| v)
    }

    /// `POST /1.0/instances/{name}/snapshots {name: snap, stateful: false}` → async operation.
    pub async fn create_snapshot(&self, name: &str, snap: &str) -> Result<Operation> {
        check_name(name)?;
        check_name(snap)?;
        self.async_op(
            Method::POST,
            &format!("/1.0/instances/{name}/snapshots"),
            Some(&json!({ "name": snap, "stateful": false })),
            None,
        )
        .await
    }

    /// `DELETE /1.0/instances/{name}/snapshots/{snap}` → async operation.
    pub async fn delete_snapshot(&self, name: &str, snap: &str) -> Result<Operation> {
        check_name(name)?;
        check_name(snap)?;
        self.async_op(
            Method::DELETE,
            &format!("/1.0/instances/{name}/snapshots/{snap}"),
            None,
            None,
        )
        .await
    }

    /// `GET /1.0/instances/{name}/logs/{file}` (e.g. `lxc.log`) → raw bytes.
    pub async fn instance_log(&self, name: &str, file: &str) -> Result<Vec<u8>> {
        check_name(name)?;
        check_name(file)?;
        self.get_raw(&format!("/1.0/instances/{name}/logs/{file}"))
            .await
    }

    /// `GET` of a raw (non-JSON) resource path such as an exec output log URL.
    /// Error answers (JSON envelopes) are mapped as usual.
    pub async fn get_raw(&self, path: &str) -> Result<Vec<u8>> {
        if !path.starts_with("/1.0/") {
            return Err(LxdError::protocol(
                format!("GET {path}"),
                "path must start with /1.0/",
            ));
        }
        let raw = self
            .request_raw(
                Method::GET,
                path,
                &[],
                crate::client::empty_body(),
                self.timeout(),
            )
            .await?;
        if !raw.status.is_success() {
            parse_envelope(&raw, &what(&Method::GET, path))?;
            return Err(LxdError::protocol(
                what(&Method::GET, path),
                format!("HTTP {}", raw.status),
            ));
        }
        Ok(raw.body.to_vec())
    }

    /// `DELETE` of a raw resource path (e.g. an exec output log). Sync.
    pub async fn delete_path(&self, path: &str) -> Result<()> {
        if !path.starts_with("/1.0/") {
            return Err(LxdError::protocol(
                format!("DELETE {path}"),
                "path must start with /1.0/",
            ));
        }
        self.sync_unit(Method::DELETE, path, None, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_name_accepts_plain_and_url_forms() {
        assert_eq!(snapshot_name("rootfs-backup"), "rootfs-backup");
        assert_eq!(
            snapshot_name("/1.0/instances/penguin/snapshots/rootfs-backup"),
            "rootfs-backup"
        );
        assert_eq!(
            snapshot_name("/1.0/containers/penguin/snapshots/snap0?project=x"),
            "snap0"
        );
    }

    #[test]
    fn instances_post_simplestreams_serializes_like_the_spec() {
        let req = InstancesPost::new(
            "crostini-inprogress-create",
            InstanceSource::simplestreams("https://example.test/120", "debian/bookworm"),
        );
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v,
            json!({
                "name": "crostini-inprogress-create",
                "type": "container",
                "source": {
                    "type": "image",
                    "mode": "pull",
                    "server": "https://example.test/120",
                    "protocol": "simplestreams",
                    "alias": "debian/bookworm"
                }
            })
        );
    }

    #[test]
    fn instances_post_copy_carries_writable_fields() {
        let mut put = InstancePut::default();
        put.config.insert("security.nesting".into(), "true".into());
        put.profiles = vec!["default".into()];
        let req = InstancesPost {
            name: "c2".into(),
            source: InstanceSource::copy_of("c1"),
            kind: String::new(),
            put: put.into(),
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v["source"],
            json!({"type": "copy", "source": "c1", "instance_only": true})
        );
        assert_eq!(v["config"]["security.nesting"], "true");
        assert_eq!(v["profiles"], json!(["default"]));
        assert!(v.get("type").is_none());
    }

    #[test]
    fn local_fingerprint_source() {
        let v = serde_json::to_value(InstanceSource::local_fingerprint("abc")).unwrap();
        assert_eq!(v, json!({"type": "image", "fingerprint": "abc"}));
    }
}
