//! xdg-desktop-portal FileChooser backend (garcon-host.md §8.3), with the recommended deviations:
//! the real portal signature `(o handle, s app_id, s parent_window, s title, a{sv} options)` is
//! decoded and `title` forwarded; OpenFile maps `options.directory=true` to `folder` and
//! `options.multiple=true` to `open-multi-file` (else `open-file`); SaveFile and SaveFiles map to
//! `saveas-file`. The reply is `(0, {"uris": as, "writable": true})` on host success (also for an
//! empty selection) and `(1, {})` when the rpc fails. No Request object is exported at `handle`.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use super::SessionHost;

pub type PortalResults = HashMap<String, OwnedValue>;

pub struct FileChooser {
    host: Arc<dyn SessionHost>,
}

impl FileChooser {
    pub fn new(host: Arc<dyn SessionHost>) -> Self {
        Self { host }
    }

    async fn select(&self, kind: &str, title: String) -> (u32, PortalResults) {
        match self.host.select_file(kind.to_string(), title).await {
            Ok(files) => (0, success_results(files)),
            Err(status) => {
                tracing::warn!(
                    kind,
                    code = ?status.code(),
                    "SelectFile for the portal failed: {}",
                    status.message()
                );
                (1, PortalResults::new())
            }
        }
    }
}

/// `{"uris": as <files>, "writable": b true}`.
pub fn success_results(files: Vec<String>) -> PortalResults {
    let mut results = PortalResults::new();
    // Converting to an owned value only fails for file descriptors; a string array has none.
    match Value::from(files).try_to_owned() {
        Ok(uris) => {
            results.insert("uris".to_string(), uris);
        }
        Err(error) => tracing::error!("cannot encode the selected files for D-Bus: {error}"),
    }
    results.insert("writable".to_string(), OwnedValue::from(true));
    results
}

fn flag(options: &HashMap<String, OwnedValue>, name: &str) -> bool {
    options
        .get(name)
        .and_then(|v| bool::try_from(v).ok())
        .unwrap_or(false)
}

/// The SelectFile `type` for an OpenFile call.
pub fn open_file_type(options: &HashMap<String, OwnedValue>) -> &'static str {
    if flag(options, "directory") {
        "folder"
    } else if flag(options, "multiple") {
        "open-multi-file"
    } else {
        "open-file"
    }
}

#[zbus::interface(name = "org.freedesktop.impl.portal.FileChooser")]
impl FileChooser {
    #[zbus(name = "OpenFile")]
    async fn open_file(
        &self,
        _handle: OwnedObjectPath,
        _app_id: String,
        _parent_window: String,
        title: String,
        options: HashMap<String, OwnedValue>,
    ) -> (u32, PortalResults) {
        self.select(open_file_type(&options), title).await
    }

    #[zbus(name = "SaveFile")]
    async fn save_file(
        &self,
        _handle: OwnedObjectPath,
        _app_id: String,
        _parent_window: String,
        title: String,
        _options: HashMap<String, OwnedValue>,
    ) -> (u32, PortalResults) {
        self.select("saveas-file", title).await
    }

    #[zbus(name = "SaveFiles")]
    async fn save_files(
        &self,
        _handle: OwnedObjectPath,
        _app_id: String,
        _parent_window: String,
        title: String,
        _options: HashMap<String, OwnedValue>,
    ) -> (u32, PortalResults) {
        self.select("saveas-file", title).await
    }
}
