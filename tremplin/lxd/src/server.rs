//! Server, storage pool, network, profile endpoints and readiness.

use http::Method;

use crate::client::Client;
use crate::error::{check_name, LxdError, Result};
use crate::instances::ETag;
use crate::types::{
    Network, NetworkPut, NetworksPost, Profile, ProfilePut, ProfilesPost, RecoverImport, Server,
    ServerPut, StoragePool, StoragePoolsPost,
};

fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| LxdError::Json {
        what: what.to_string(),
        source: e,
    })
}

impl Client {
    /// `GET /internal/ready`: Ok when LXD finished starting.
    pub async fn ready(&self) -> Result<()> {
        self.sync_unit(Method::GET, "/internal/ready", None, None)
            .await
    }

    /// `GET /1.0` → server info and ETag.
    pub async fn server(&self) -> Result<(Server, ETag)> {
        self.sync_json(Method::GET, "/1.0", None, None).await
    }

    /// `PUT /1.0` (sync) with `If-Match` when `etag` is given.
    pub async fn update_server(&self, put: &ServerPut, etag: Option<&str>) -> Result<()> {
        let body = to_json(put, "PUT /1.0")?;
        self.sync_unit(Method::PUT, "/1.0", Some(&body), etag).await
    }

    /// `GET /1.0/storage-pools/{name}`.
    pub async fn storage_pool(&self, name: &str) -> Result<(StoragePool, ETag)> {
        check_name(name)?;
        self.sync_json(
            Method::GET,
            &format!("/1.0/storage-pools/{name}"),
            None,
            None,
        )
        .await
    }

    /// `POST /1.0/storage-pools` (sync).
    pub async fn create_storage_pool(&self, req: &StoragePoolsPost) -> Result<()> {
        check_name(&req.name)?;
        let body = to_json(req, "POST /1.0/storage-pools")?;
        self.sync_unit(Method::POST, "/1.0/storage-pools", Some(&body), None)
            .await
    }

    /// `POST /internal/recover/import` (sync): re-imports instances found on the pools.
    pub async fn recover_import(&self, req: &RecoverImport) -> Result<()> {
        let body = to_json(req, "POST /internal/recover/import")?;
        self.sync_unit(Method::POST, "/internal/recover/import", Some(&body), None)
            .await
    }

    /// `GET /1.0/networks/{name}` → network and ETag.
    pub async fn network(&self, name: &str) -> Result<(Network, ETag)> {
        check_name(name)?;
        self.sync_json(Method::GET, &format!("/1.0/networks/{name}"), None, None)
            .await
    }

    /// `POST /1.0/networks` (sync).
    pub async fn create_network(&self, req: &NetworksPost) -> Result<()> {
        check_name(&req.name)?;
        let body = to_json(req, "POST /1.0/networks")?;
        self.sync_unit(Method::POST, "/1.0/networks", Some(&body), None)
            .await
    }

    /// `PUT /1.0/networks/{name}` (sync) with `If-Match` when `etag` is given.
    pub async fn update_network(
        &self,
        name: &str,
        put: &NetworkPut,
        etag: Option<&str>,
    ) -> Result<()> {
        check_name(name)?;
        let path = format!("/1.0/networks/{name}");
        let body = to_json(put, &format!("PUT {path}"))?;
        self.sync_unit(Method::PUT, &path, Some(&body), etag).await
    }

    /// `DELETE /1.0/networks/{name}` (sync).
    pub async fn delete_network(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.sync_unit(Method::DELETE, &format!("/1.0/networks/{name}"), None, None)
            .await
    }

    /// `GET /1.0/profiles/{name}` → profile and ETag.
    pub async fn profile(&self, name: &str) -> Result<(Profile, ETag)> {
        check_name(name)?;
        self.sync_json(Method::GET, &format!("/1.0/profiles/{name}"), None, None)
            .await
    }

    /// `POST /1.0/profiles` (sync).
    pub async fn create_profile(&self, req: &ProfilesPost) -> Result<()> {
        check_name(&req.name)?;
        let body = to_json(req, "POST /1.0/profiles")?;
        self.sync_unit(Method::POST, "/1.0/profiles", Some(&body), None)
            .await
    }

    /// `PUT /1.0/profiles/{name}` (sync) with `If-Match` when `etag` is given.
    pub async fn update_profile(
        &self,
        name: &str,
        put: &ProfilePut,
        etag: Option<&str>,
    ) -> Result<()> {
        check_name(name)?;
        let path = format!("/1.0/profiles/{name}");
        let body = to_json(put, &format!("PUT {path}"))?;
        self.sync_unit(Method::PUT, &path, Some(&body), etag).await
    }

    /// `DELETE /1.0/profiles/{name}` (sync).
    pub async fn delete_profile(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.sync_unit(Method::DELETE, &format!("/1.0/profiles/{name}"), None, None)
            .await
    }
}
