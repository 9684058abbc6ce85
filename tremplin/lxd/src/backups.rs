//! Instance backups: create, export to a file, delete, import.

use std::path::Path;
use std::time::Duration;

use http::Method;

use crate::cancel::CancelToken;
use crate::client::Client;
use crate::error::{check_name, LxdError, Result};
use crate::operation::Operation;
use crate::transfer::{Part, Transfer};
use crate::types::{Backup, BackupsPost};

/// Options of [`Client::export_instance`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Name of the temporary backup.
    pub backup_name: String,
    /// `gzip` (default), `none`, `xz`, ...
    pub compression_algorithm: String,
    /// How long LXD may take to produce the backup.
    pub wait_timeout: Duration,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            backup_name: "crostini-export".to_string(),
            compression_algorithm: "gzip".to_string(),
            wait_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl BackupsPost {
    /// `{name, instance_only: true, optimized_storage: false, compression_algorithm}`.
    pub fn instance_only(name: &str, compression_algorithm: &str) -> Self {
        BackupsPost {
            name: name.to_string(),
            instance_only: true,
            optimized_storage: false,
            compression_algorithm: compression_algorithm.to_string(),
        }
    }
}

impl Client {
    /// `POST /1.0/instances/{name}/backups` → async operation.
    pub async fn create_backup(&self, instance: &str, req: &BackupsPost) -> Result<Operation> {
        check_name(instance)?;
        check_name(&req.name)?;
        let path = format!("/1.0/instances/{instance}/backups");
        let body = serde_json::to_value(req).map_err(|e| LxdError::Json {
            what: format!("POST {path}"),
            source: e,
        })?;
        self.async_op(Method::POST, &path, Some(&body), None).await
    }

    /// `GET /1.0/instances/{name}/backups/{backup}`.
    pub async fn backup(&self, instance: &str, backup: &str) -> Result<Backup> {
        check_name(instance)?;
        check_name(backup)?;
        self.sync_json(
            Method::GET,
            &format!("/1.0/instances/{instance}/backups/{backup}"),
            None,
            None,
        )
        .await
        .map(|(v, _)| v)
    }

    /// `DELETE /1.0/instances/{name}/backups/{backup}` → async operation.
    pub async fn delete_backup(&self, instance: &str, backup: &str) -> Result<Operation> {
        check_name(instance)?;
        check_name(backup)?;
        self.async_op(
            Method::DELETE,
            &format!("/1.0/instances/{instance}/backups/{backup}"),
            None,
            None,
        )
        .await
    }

    /// Streams `GET /1.0/instances/{name}/backups/{backup}/export` into `dest`
    /// (written as `<dest>.partial`, renamed at the end; removed on failure/cancel).
    /// Returns the bytes written.
    pub async fn export_backup_to_file<F: FnMut(Transfer)>(
        &self,
        instance: &str,
        backup: &str,
        dest: &Path,
        progress: F,
        cancel: &CancelToken,
    ) -> Result<u64> {
        check_name(instance)?;
        check_name(backup)?;
        let path = format!("/1.0/instances/{instance}/backups/{backup}/export");
        self.download_to_file(&path, dest, progress, cancel).await
    }

    /// Whole export: create backup `opts.backup_name` (instance only, not optimized,
    /// `opts.compression_algorithm`), wait up to `opts.wait_timeout`, stream it to `dest`,
    /// then delete the backup (also on failure/cancel). Returns the bytes written.
    pub async fn export_instance<F: FnMut(Transfer)>(
        &self,
        instance: &str,
        dest: &Path,
        opts: &ExportOptions,
        progress: F,
        cancel: &CancelToken,
    ) -> Result<u64> {
        let backup_name = opts.backup_name.as_str();
        let wait_timeout = opts.wait_timeout;
        let compression_algorithm = opts.compression_algorithm.as_str();
        let op = self
            .create_backup(
                instance,
                &BackupsPost::instance_only(backup_name, compression_algorithm),
            )
            .await?;
        let created = tokio::select! {
            r = self.wait(&op, wait_timeout) => r,
            _ = cancel.cancelled() => {
                if let Err(e) = self.cancel(&op).await {
                    tracing::debug!("cancelling backup operation {}: {e}", op.id);
                }
                // Let the operation settle so the backup can be removed below.
                let _ = self.wait_final(&op.id, wait_timeout.min(Duration::from_secs(60))).await;
                Err(LxdError::Cancelled {
                    what: format!("creating backup {backup_name} of {instance}"),
                    message: String::new(),
                })
            }
        };
        let result = match created {
            Ok(_) => {
                self.export_backup_to_file(instance, backup_name, dest, progress, cancel)
                    .await
            }
            Err(e) => Err(e),
        };
        match self.delete_backup(instance, backup_name).await {
            Ok(del) => {
                if let Err(e) = self.wait(&del, self.timeout()).await {
                    tracing::warn!("deleting backup {backup_name} of {instance}: {e}");
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::warn!("deleting backup {backup_name} of {instance}: {e}"),
        }
        result
    }

    /// Imports a backup tarball as instance `name`: `POST /1.0/instances` with
    /// `Content-Type: application/octet-stream`, `X-LXD-name`, optional `X-LXD-pool`, body
    /// streamed from `file`. Returns the (creation) operation to wait on.
    pub async fn import_backup<F: FnMut(Transfer)>(
        &self,
        name: &str,
        file: &Path,
        pool: Option<&str>,
        progress: F,
        cancel: &CancelToken,
    ) -> Result<Operation> {
        check_name(name)?;
        let mut headers = vec![
            ("content-type", "application/octet-stream".to_string()),
            ("x-lxd-name", name.to_string()),
        ];
        if let Some(pool) = pool {
            check_name(pool)?;
            headers.push(("x-lxd-pool", pool.to_string()));
        }
        self.upload_op(
            "/1.0/instances",
            &headers,
            vec![Part::File(file.to_path_buf())],
            progress,
            cancel,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backups_post_body() {
        let v = serde_json::to_value(BackupsPost::instance_only("b1", "gzip")).unwrap();
        assert_eq!(
            v,
            json!({"name": "b1", "instance_only": true, "optimized_storage": false, "compression_algorithm": "gzip"})
        );
    }
}
