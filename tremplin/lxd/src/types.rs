//! Typed LXD REST objects (only the fields tremplin needs; unknown fields are ignored,
//! missing ones default).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Deserializes `null` (which LXD sends for empty lists/maps) as the default value.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `config` map of instances, profiles, networks, pools.
pub type Config = BTreeMap<String, String>;
/// `devices` map: device name → device properties.
pub type Devices = BTreeMap<String, BTreeMap<String, String>>;

/// `GET /1.0`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Server {
    #[serde(deserialize_with = "nullable")]
    pub config: BTreeMap<String, serde_json::Value>,
    #[serde(deserialize_with = "nullable")]
    pub api_extensions: Vec<String>,
    pub api_status: String,
    pub api_version: String,
    pub auth: String,
    pub public: bool,
    pub environment: ServerEnvironment,
}

/// `GET /1.0` → `environment`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerEnvironment {
    #[serde(deserialize_with = "nullable")]
    pub architectures: Vec<String>,
    pub driver: String,
    pub driver_version: String,
    pub kernel: String,
    pub kernel_architecture: String,
    pub kernel_version: String,
    pub server: String,
    pub server_name: String,
    pub server_pid: i64,
    pub server_version: String,
    pub storage: String,
    pub storage_version: String,
}

/// `PUT /1.0` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerPut {
    #[serde(deserialize_with = "nullable")]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// `GET /1.0/storage-pools/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct StoragePool {
    pub name: String,
    pub driver: String,
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub used_by: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub locations: Vec<String>,
}

/// `POST /1.0/storage-pools` body (also the element of the recovery request).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct StoragePoolsPost {
    pub name: String,
    pub driver: String,
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
}

/// `POST /internal/recover/import` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RecoverImport {
    #[serde(deserialize_with = "nullable")]
    pub pools: Vec<StoragePoolsPost>,
}

/// `GET /1.0/networks/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Network {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub managed: bool,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub used_by: Vec<String>,
}

impl Network {
    /// The writable part, for a PUT.
    pub fn writable(&self) -> NetworkPut {
        NetworkPut {
            description: self.description.clone(),
            config: self.config.clone(),
        }
    }
}

/// `POST /1.0/networks` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct NetworksPost {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
}

/// `PUT /1.0/networks/{name}` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct NetworkPut {
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
}

/// `GET /1.0/profiles/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Profile {
    pub name: String,
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    #[serde(deserialize_with = "nullable")]
    pub devices: Devices,
    #[serde(deserialize_with = "nullable")]
    pub used_by: Vec<String>,
}

impl Profile {
    /// The writable part, for a PUT.
    pub fn writable(&self) -> ProfilePut {
        ProfilePut {
            description: self.description.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
        }
    }
}

/// `POST /1.0/profiles` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProfilesPost {
    pub name: String,
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    #[serde(deserialize_with = "nullable")]
    pub devices: Devices,
}

/// `PUT /1.0/profiles/{name}` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProfilePut {
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    #[serde(deserialize_with = "nullable")]
    pub devices: Devices,
}

/// `GET /1.0/instances/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Instance {
    pub name: String,
    pub description: String,
    pub status: String,
    pub status_code: i64,
    pub architecture: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    #[serde(deserialize_with = "nullable")]
    pub devices: Devices,
    pub ephemeral: bool,
    #[serde(deserialize_with = "nullable")]
    pub profiles: Vec<String>,
    pub stateful: bool,
    #[serde(deserialize_with = "nullable")]
    pub expanded_config: Config,
    #[serde(deserialize_with = "nullable")]
    pub expanded_devices: Devices,
    pub created_at: String,
    pub last_used_at: String,
    pub location: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub project: String,
}

impl Instance {
    /// `status_code == 103`.
    pub fn is_running(&self) -> bool {
        self.status_code == crate::operation::status_code::RUNNING
    }

    /// The writable part, for a PUT (or a copy).
    pub fn writable(&self) -> InstancePut {
        InstancePut {
            architecture: self.architecture.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
            ephemeral: self.ephemeral,
            profiles: self.profiles.clone(),
            stateful: self.stateful,
            description: self.description.clone(),
        }
    }
}

/// Writable part of an instance (`PUT /1.0/instances/{name}` body).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstancePut {
    pub architecture: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    #[serde(deserialize_with = "nullable")]
    pub devices: Devices,
    pub ephemeral: bool,
    #[serde(deserialize_with = "nullable")]
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub description: String,
}

/// `POST /1.0/instances` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct InstancesPost {
    pub name: String,
    pub source: InstanceSource,
    /// `"container"` (default when empty is sent as container by LXD).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty", default)]
    pub kind: String,
    /// Writable fields (architecture, config, devices, profiles, ...). When `profiles` is
    /// empty it is omitted so LXD applies the `default` profile.
    #[serde(flatten)]
    pub put: InstancesPostFields,
}

/// Writable fields of an `InstancesPost`; empty values are omitted so LXD uses defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstancesPostFields {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[serde(deserialize_with = "nullable")]
    pub devices: Devices,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl From<InstancePut> for InstancesPostFields {
    fn from(p: InstancePut) -> Self {
        InstancesPostFields {
            architecture: p.architecture,
            config: p.config,
            devices: p.devices,
            ephemeral: p.ephemeral,
            profiles: Some(p.profiles),
            description: p.description,
        }
    }
}

/// `source` of an `InstancesPost`. Use the constructors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceSource {
    /// `image`, `copy`, `none`, `migration`, `backup`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// For `copy`: the source instance name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub instance_only: bool,
}

impl InstanceSource {
    /// `{type: image, mode: pull, server, protocol: simplestreams, alias}`.
    pub fn simplestreams(server: &str, alias: &str) -> Self {
        InstanceSource {
            kind: "image".into(),
            mode: "pull".into(),
            server: server.into(),
            protocol: "simplestreams".into(),
            alias: alias.into(),
            ..Default::default()
        }
    }

    /// `{type: image, fingerprint}` (local image).
    pub fn local_fingerprint(fingerprint: &str) -> Self {
        InstanceSource {
            kind: "image".into(),
            fingerprint: fingerprint.into(),
            ..Default::default()
        }
    }

    /// `{type: image, alias}` (local image alias).
    pub fn local_alias(alias: &str) -> Self {
        InstanceSource {
            kind: "image".into(),
            alias: alias.into(),
            ..Default::default()
        }
    }

    /// `{type: copy, source, instance_only: true}` (local copy without snapshots).
    pub fn copy_of(source: &str) -> Self {
        InstanceSource {
            kind: "copy".into(),
            source: source.into(),
            instance_only: true,
            ..Default::default()
        }
    }
}

/// `GET /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceState {
    pub status: String,
    pub status_code: i64,
    pub pid: i64,
    pub processes: i64,
    /// Interface name → state; `None` when the instance is stopped.
    pub network: Option<BTreeMap<String, InstanceNetworkState>>,
}

impl InstanceState {
    /// `status_code == 103`.
    pub fn is_running(&self) -> bool {
        self.status_code == crate::operation::status_code::RUNNING
    }
}

/// One interface of an instance state.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceNetworkState {
    #[serde(deserialize_with = "nullable")]
    pub addresses: Vec<InstanceNetworkAddress>,
    pub hwaddr: String,
    pub host_name: String,
    pub mtu: i64,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// One address of an interface.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceNetworkAddress {
    /// `inet` or `inet6`.
    pub family: String,
    pub address: String,
    pub netmask: String,
    /// `global`, `link`, `local`.
    pub scope: String,
}

/// `PUT /1.0/instances/{name}/state` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct InstanceStatePut {
    /// `start`, `stop`, `restart`, `freeze`, `unfreeze`.
    pub action: String,
    /// Seconds; -1 = no timeout.
    pub timeout: i64,
    pub force: bool,
    pub stateful: bool,
}

impl InstanceStatePut {
    /// `{action: start, timeout: -1, force: false, stateful: false}`.
    pub fn start() -> Self {
        InstanceStatePut {
            action: "start".into(),
            timeout: -1,
            force: false,
            stateful: false,
        }
    }

    /// `{action: stop, timeout: -1, force, stateful: false}`.
    pub fn stop(force: bool) -> Self {
        InstanceStatePut {
            action: "stop".into(),
            timeout: -1,
            force,
            stateful: false,
        }
    }
}

/// `GET /1.0/instances/{name}/metadata` (image metadata of an instance).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct InstanceMetadata {
    pub architecture: String,
    pub creation_date: i64,
    pub expiry_date: i64,
    #[serde(deserialize_with = "nullable")]
    pub properties: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub templates: BTreeMap<String, serde_json::Value>,
    /// Any other keys, preserved on PUT.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `GET /1.0/instances/{name}/snapshots/{snap}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Snapshot {
    pub name: String,
    pub architecture: String,
    #[serde(deserialize_with = "nullable")]
    pub config: Config,
    #[serde(deserialize_with = "nullable")]
    pub devices: Devices,
    #[serde(deserialize_with = "nullable")]
    pub expanded_config: Config,
    #[serde(deserialize_with = "nullable")]
    pub expanded_devices: Devices,
    pub ephemeral: bool,
    #[serde(deserialize_with = "nullable")]
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub created_at: String,
    pub expires_at: String,
    pub size: i64,
}

/// `GET /1.0/images/{fingerprint}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Image {
    pub fingerprint: String,
    pub filename: String,
    pub size: i64,
    pub architecture: String,
    pub public: bool,
    pub auto_update: bool,
    pub cached: bool,
    #[serde(deserialize_with = "nullable")]
    pub properties: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub aliases: Vec<ImageAliasEntry>,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub uploaded_at: String,
    pub expires_at: String,
}

/// Alias entry inside an [`Image`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ImageAliasEntry {
    pub name: String,
    pub description: String,
}

/// `GET /1.0/images/aliases/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ImageAlias {
    pub name: String,
    pub description: String,
    pub target: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /1.0/instances/{name}/backups/{backup}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Backup {
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    pub instance_only: bool,
    pub container_only: bool,
    pub optimized_storage: bool,
}

/// `POST /1.0/instances/{name}/backups` body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct BackupsPost {
    pub name: String,
    pub instance_only: bool,
    pub optimized_storage: bool,
    /// e.g. `gzip`, `none`, `xz`; empty = server default.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub compression_algorithm: String,
}
