//! `crostini-lxd`: a small client of the LXD REST API over its Unix socket, with exactly
//! what tremplin needs (spec `tremplin.md` §4): typed objects, async operations (wait,
//! cancel, follow via the events websocket), progress metadata parsing, exec with recorded
//! output, the file API, image upload, and backup export/import streamed to/from files.
//!
//! Every request has a timeout (`Client::with_timeout`, default 30 s); long waits go
//! through [`Client::wait`] / [`Client::follow_operation`] with explicit timeouts.

mod backups;
mod cancel;
mod client;
mod error;
mod events;
mod exec;
mod files;
mod images;
mod instances;
mod operation;
pub mod progress;
mod server;
mod transfer;
pub mod types;

pub use backups::ExportOptions;
pub use cancel::CancelToken;
pub use client::{
    default_socket_path, Client, Envelope, DEFAULT_LXD_DIR, DEFAULT_TIMEOUT, MAX_BUFFERED_BODY,
};
pub use error::{LxdError, Result};
pub use events::{Event, EventStream, EventType, LifecycleEvent, Liveness, OperationUpdates};
pub use exec::{ExecOutput, ExecRequest};
pub use files::{FileContent, FileMeta};
pub use images::ImageUpload;
pub use instances::{snapshot_name, ETag};
pub use operation::{parse_rfc3339_nanos, status_code, Operation, OperationState};
pub use transfer::{partial_path, Transfer};
pub use types::*;

#[cfg(test)]
mod send_tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn assert_send<T: Send>(_: &T) {}

    /// tremplin spawns these on a multi-threaded runtime: their futures must be `Send`.
    #[test]
    fn long_running_futures_are_send() {
        let c = Client::new("/nonexistent");
        let req = ExecRequest::new(&["true"]);
        let token = CancelToken::new();
        let op = Operation::default();
        assert_send(&c.exec("a", &req));
        assert_send(&c.wait(&op, Duration::from_secs(1)));
        assert_send(&c.events(&[EventType::Lifecycle]));
        assert_send(
            &c.follow_operation(None, op.clone(), Duration::from_secs(1))
                .next(),
        );
        let opts = ExportOptions::default();
        assert_send(&c.export_instance("a", Path::new("/x"), &opts, |_| {}, &token));
        assert_send(&c.import_backup("a", Path::new("/x"), None, |_| {}, &token));
        assert_send(&c.upload_image(Path::new("/x"), &ImageUpload::default(), |_| {}, &token));
    }
}
