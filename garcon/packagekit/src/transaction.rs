//! One PackageKit transaction: create it, subscribe to its signals **before** issuing the request
//! (garcon-service §5.4), then read its events in order until `Finished`, the daemon's death, or
//! the watchdog.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zbus::message::Type as MessageType;
use zbus::names::{InterfaceName, OwnedUniqueName};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{MatchRule, Message, MessageStream};

use crate::details::PackageDetails;
use crate::enums::{HINTS, PERCENTAGE_UNKNOWN};
use crate::error::{DbusError, GeneralError};
use crate::proxy::{PackageKitProxy, TransactionProxy, SERVICE, TRANSACTION_INTERFACE};

const DBUS_NAME: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";
const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";

/// Messages queued per subscription inside zbus before the pump task moves them on (the pump
/// drains continuously, so this only absorbs bursts).
const SUBSCRIPTION_QUEUE: usize = 256;

/// Time limits for PackageKit work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Every D-Bus method call (libdbus' default, 25 s, per §5.4).
    pub call: Duration,
    /// Watchdog for a whole transaction: if neither `Finished` nor the daemon's death arrives in
    /// this time the operation fails (the reference has none; §5.6 allows e.g. 1 h).
    pub transaction: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            call: Duration::from_secs(25),
            transaction: Duration::from_secs(60 * 60),
        }
    }
}

/// The request method a transaction runs, with the raw argument values of §5.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `GetDetailsLocal([file])`.
    GetDetailsLocal(&'a str),
    /// `GetDetails([package_id])`.
    GetDetails(&'a str),
    /// `Resolve(1, [name])`.
    Resolve(&'a str),
    /// `SearchFiles(2, [absolute path])`.
    SearchFiles(&'a str),
    /// `InstallFiles(0, [file])`.
    InstallFiles(&'a str),
    /// `InstallPackages(0, [package_id])`.
    InstallPackages(&'a str),
    /// `RemovePackages(0, [package_id], allow_deps=false, autoremove=true)`.
    RemovePackages(&'a str),
    /// `RefreshCache(force)`.
    RefreshCache(bool),
    /// `GetUpdates(2)` (the "none" filter bit).
    GetUpdates,
    /// `UpdatePackages(ONLY_TRUSTED, package_ids)`.
    UpdatePackages(&'a [&'a str]),
}

impl Request<'_> {
    /// The D-Bus method name.
    pub fn method(&self) -> &'static str {
        match self {
            Request::GetDetailsLocal(_) => "GetDetailsLocal",
            Request::GetDetails(_) => "GetDetails",
            Request::Resolve(_) => "Resolve",
            Request::SearchFiles(_) => "SearchFiles",
            Request::InstallFiles(_) => "InstallFiles",
            Request::InstallPackages(_) => "InstallPackages",
            Request::RemovePackages(_) => "RemovePackages",
            Request::RefreshCache(_) => "RefreshCache",
            Request::GetUpdates => "GetUpdates",
            Request::UpdatePackages(_) => "UpdatePackages",
        }
    }

    async fn issue(&self, proxy: &TransactionProxy<'_>) -> zbus::Result<()> {
        use crate::enums::{
            FILTER_GET_UPDATES, FILTER_RESOLVE, FILTER_SEARCH_FILES,
            TRANSACTION_FLAGS_NONE as NONE, TRANSACTION_FLAGS_ONLY_TRUSTED as ONLY_TRUSTED,
        };
        match *self {
            Request::GetDetailsLocal(file) => proxy.get_details_local(&[file]).await,
            Request::GetDetails(id) => proxy.get_details(&[id]).await,
            Request::Resolve(name) => proxy.resolve(FILTER_RESOLVE, &[name]).await,
            Request::SearchFiles(path) => proxy.search_files(FILTER_SEARCH_FILES, &[path]).await,
            Request::InstallFiles(file) => proxy.install_files(NONE, &[file]).await,
            Request::InstallPackages(id) => proxy.install_packages(NONE, &[id]).await,
            Request::RemovePackages(id) => proxy.remove_packages(NONE, &[id], false, true).await,
            Request::RefreshCache(force) => proxy.refresh_cache(force).await,
            Request::GetUpdates => proxy.get_updates(FILTER_GET_UPDATES).await,
            Request::UpdatePackages(ids) => proxy.update_packages(ONLY_TRUSTED, ids).await,
        }
    }
}

/// The transaction's `Status` and `Percentage` after one `PropertiesChanged` (or the initial
/// `GetAll`), with which of the two it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Properties {
    /// Current `PkStatusEnum`.
    pub status: u32,
    /// Current percentage (101 = unknown).
    pub percentage: u32,
    /// `Status` was part of this change.
    pub status_changed: bool,
    /// `Percentage` was part of this change.
    pub percentage_changed: bool,
}

/// One event of a transaction, in the order PackageKit sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Transaction properties changed (only reported when tracking properties).
    Properties(Properties),
    /// A `Package` signal (a batched `Packages` signal yields one event per entry).
    Package {
        /// `PkInfoEnum`.
        info: u32,
        /// `name;version;arch;data`.
        package_id: String,
        /// One-line summary.
        summary: String,
    },
    /// A `Details` signal.
    Details(PackageDetails),
    /// An `ErrorCode` signal.
    ErrorCode {
        /// `PkErrorEnum`.
        code: u32,
        /// Message.
        details: String,
    },
    /// `Finished`: the last event.
    Finished {
        /// `PkExitEnum` (1 = success).
        exit: u32,
        /// Run time in milliseconds.
        runtime_ms: u32,
    },
}

/// What the pump task hands to the transaction.
enum Raw {
    Signal(Message),
    DaemonGone,
    Failed(zbus::Error),
}

/// A running transaction. Dropping it drops the subscriptions (the daemon-side transaction is
/// not cancelled).
pub struct Transaction {
    method: &'static str,
    path: OwnedObjectPath,
    events: mpsc::UnboundedReceiver<Raw>,
    pending: VecDeque<Event>,
    pump: JoinHandle<()>,
    deadline: Instant,
    watchdog: Duration,
    track_properties: bool,
    status: u32,
    percentage: u32,
    done: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("method", &self.method)
            .field("path", &self.path.as_str())
            .field("status", &self.status)
            .field("percentage", &self.percentage)
            .finish_non_exhaustive()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// Runs `fut` with the call timeout, mapping both failure kinds to a [`DbusError`].
pub(crate) async fn timed<T>(
    timeout: Duration,
    fut: impl Future<Output = zbus::Result<T>>,
) -> Result<T, DbusError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(DbusError::no_reply(timeout)),
    }
}

impl Transaction {
    /// Creates a transaction, subscribes to everything it will emit, sets the hints, reads the
    /// initial properties (when `track_properties`), and issues `request`.
    pub(crate) async fn begin(
        root: &PackageKitProxy<'static>,
        timeouts: Timeouts,
        request: Request<'_>,
        track_properties: bool,
    ) -> Result<Self, GeneralError> {
        let conn = root.inner().connection().clone();
        let call = timeouts.call;

        // Death watch first, so that a daemon dying at any point after creation is noticed.
        let owner_rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(DBUS_NAME)
            .and_then(|b| b.path(DBUS_PATH))
            .and_then(|b| b.interface(DBUS_NAME))
            .and_then(|b| b.member("NameOwnerChanged"))
            .and_then(|b| b.arg(0, SERVICE))
            .map_err(|e| GeneralError::Subscribe(e.into()))?
            .build();
        let owner_stream = timed(
            call,
            MessageStream::for_match_rule(owner_rule, &conn, Some(SUBSCRIPTION_QUEUE)),
        )
        .await
        .map_err(GeneralError::Subscribe)?;

        let reply = timed(call, root.inner().call_method("CreateTransaction", &()))
            .await
            .map_err(GeneralError::CreateTransaction)?;
        let owner: OwnedUniqueName = reply
            .header()
            .sender()
            .map(|s| s.to_owned().into())
            .ok_or_else(|| {
                GeneralError::CreateTransaction(DbusError {
                    name: crate::error::FAILED.to_owned(),
                    message: "CreateTransaction reply has no sender".to_owned(),
                })
            })?;
        let path: OwnedObjectPath = reply
            .body()
            .deserialize()
            .map_err(|e| GeneralError::CreateTransaction(e.into()))?;
        tracing::debug!(method = request.method(), path = path.as_str(), %owner, "transaction created");

        // Every signal the daemon sends on the transaction path: the Transaction interface's
        // signals and PropertiesChanged, in one ordered stream.
        let signal_rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(owner.clone())
            .and_then(|b| b.path(path.clone()))
            .map_err(|e| GeneralError::Subscribe(e.into()))?
            .build()
            .to_owned();
        let signal_stream = timed(
            call,
            MessageStream::for_match_rule(signal_rule, &conn, Some(SUBSCRIPTION_QUEUE)),
        )
        .await
        .map_err(GeneralError::Subscribe)?;

        let proxy = TransactionProxy::builder(&conn)
            .destination(owner.clone())
            .and_then(|b| b.path(path.clone()))
            .map_err(|e| GeneralError::Subscribe(e.into()))?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| GeneralError::Subscribe(e.into()))?;

        // From here on the pump belongs to `transaction`, whose drop aborts it on any early return.
        let (tx, events) = mpsc::unbounded_channel();
        let pump = tokio::spawn(pump(signal_stream, owner_stream, owner.clone(), tx));
        let mut transaction = Self {
            method: request.method(),
            path,
            events,
            pending: VecDeque::new(),
            pump,
            deadline: Instant::now() + timeouts.transaction,
            watchdog: timeouts.transaction,
            track_properties,
            status: 0,
            percentage: PERCENTAGE_UNKNOWN,
            done: false,
        };

        if let Err(err) = timed(call, proxy.set_hints(&HINTS)).await {
            tracing::warn!(path = transaction.path.as_str(), %err, "SetHints failed (ignored)");
        }

        if track_properties {
            let properties = zbus::fdo::PropertiesProxy::builder(&conn)
                .destination(owner)
                .and_then(|b| b.path(transaction.path.clone()))
                .map_err(|e| GeneralError::Subscribe(e.into()))?
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| GeneralError::Subscribe(e.into()))?;
            let interface = InterfaceName::from_static_str_unchecked(TRANSACTION_INTERFACE);
            let initial = timed(call, async {
                properties
                    .get_all(interface)
                    .await
                    .map_err(zbus::Error::from)
            })
            .await
            .map_err(GeneralError::Subscribe)?;
            // The initial values count as a change.
            transaction.apply_properties(&initial);
        }

        timed(call, request.issue(&proxy))
            .await
            .map_err(GeneralError::Request)?;
        Ok(transaction)
    }

    /// The transaction's object path.
    pub fn path(&self) -> &str {
        self.path.as_str()
    }

    /// The next event. After `Finished` or an error the transaction is over; a further call
    /// returns an error immediately.
    pub async fn next_event(&mut self) -> Result<Event, GeneralError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if matches!(event, Event::Finished { .. }) {
                    self.done = true;
                }
                return Ok(event);
            }
            if self.done {
                return Err(GeneralError::ConnectionLost(DbusError {
                    name: crate::error::FAILED.to_owned(),
                    message: format!("transaction {} already finished", self.path.as_str()),
                }));
            }
            let raw = match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
                Err(_) => {
                    self.done = true;
                    return Err(GeneralError::TransactionTimeout(self.watchdog));
                }
                Ok(None) => {
                    self.done = true;
                    return Err(GeneralError::ConnectionLost(DbusError {
                        name: crate::error::FAILED.to_owned(),
                        message: "signal subscription ended".to_owned(),
                    }));
                }
                Ok(Some(raw)) => raw,
            };
            match raw {
                Raw::Signal(message) => self.translate(&message),
                Raw::DaemonGone => {
                    self.done = true;
                    return Err(GeneralError::ServiceDied);
                }
                Raw::Failed(err) => {
                    self.done = true;
                    return Err(GeneralError::ConnectionLost(err.into()));
                }
            }
        }
    }

    fn translate(&mut self, message: &Message) {
        let header = message.header();
        let (Some(interface), Some(member)) = (header.interface(), header.member()) else {
            return;
        };
        let body = message.body();
        let event = match (interface.as_str(), member.as_str()) {
            (PROPERTIES_INTERFACE, "PropertiesChanged") => {
                match body.deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>() {
                    Ok((iface, changed, _)) if iface == TRANSACTION_INTERFACE => {
                        self.apply_properties(&changed);
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "malformed PropertiesChanged ignored"),
                }
                return;
            }
            (TRANSACTION_INTERFACE, "ErrorCode") => body
                .deserialize::<(u32, String)>()
                .map(|(code, details)| Event::ErrorCode { code, details }),
            (TRANSACTION_INTERFACE, "Finished") => body
                .deserialize::<(u32, u32)>()
                .map(|(exit, runtime_ms)| Event::Finished { exit, runtime_ms }),
            (TRANSACTION_INTERFACE, "Package") => {
                body.deserialize::<(u32, String, String)>()
                    .map(|(info, package_id, summary)| Event::Package {
                        info,
                        package_id,
                        summary,
                    })
            }
            (TRANSACTION_INTERFACE, "Packages") => {
                match body.deserialize::<(Vec<(u32, String, String)>,)>() {
                    Ok((packages,)) => self.pending.extend(packages.into_iter().map(
                        |(info, package_id, summary)| Event::Package {
                            info,
                            package_id,
                            summary,
                        },
                    )),
                    Err(err) => tracing::warn!(%err, "malformed Packages signal ignored"),
                }
                return;
            }
            (TRANSACTION_INTERFACE, "Details") => body
                .deserialize::<(HashMap<String, OwnedValue>,)>()
                .map(|(dict,)| Event::Details(PackageDetails::from_dict(&dict))),
            _ => return,
        };
        match event {
            Ok(event) => self.pending.push_back(event),
            Err(err) => tracing::warn!(%err, member = member.as_str(), "malformed signal ignored"),
        }
    }

    fn apply_properties(&mut self, changed: &HashMap<String, OwnedValue>) {
        let status = changed.get("Status").and_then(|v| u32::try_from(v).ok());
        let percentage = changed
            .get("Percentage")
            .and_then(|v| u32::try_from(v).ok());
        if let Some(status) = status {
            self.status = status;
        }
        if let Some(percentage) = percentage {
            self.percentage = percentage;
        }
        if self.track_properties {
            self.pending.push_back(Event::Properties(Properties {
                status: self.status,
                percentage: self.percentage,
                status_changed: status.is_some(),
                percentage_changed: percentage.is_some(),
            }));
        }
    }
}

/// Moves messages from the zbus subscriptions into the transaction's queue as they arrive, so
/// zbus' bounded queues never fill while the transaction's owner is busy (e.g. delivering
/// progress to the host). Ends when the transaction is dropped (aborted) or the daemon is gone.
async fn pump(
    mut signals: MessageStream,
    mut owners: MessageStream,
    owner: OwnedUniqueName,
    tx: mpsc::UnboundedSender<Raw>,
) {
    loop {
        let raw = tokio::select! {
            // Signals first: anything the daemon sent before dying is delivered before its death.
            biased;
            message = signals.next() => match message {
                Some(Ok(message)) => Raw::Signal(message),
                Some(Err(err)) => Raw::Failed(err),
                None => Raw::Failed(connection_closed()),
            },
            message = owners.next() => match message {
                Some(Ok(message)) => {
                    if !lost_owner(&message, &owner) {
                        continue;
                    }
                    Raw::DaemonGone
                }
                Some(Err(err)) => Raw::Failed(err),
                None => Raw::Failed(connection_closed()),
            },
        };
        let last = !matches!(raw, Raw::Signal(_));
        if tx.send(raw).is_err() || last {
            return;
        }
    }
}

fn connection_closed() -> zbus::Error {
    zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "D-Bus connection closed",
    )))
}

/// Whether a `NameOwnerChanged(name, old, new)` says that `owner` no longer holds the
/// PackageKit name (it died, or released the name).
fn lost_owner(message: &Message, owner: &OwnedUniqueName) -> bool {
    match message.body().deserialize::<(String, String, String)>() {
        Ok((name, old, new)) => name == SERVICE && old == owner.as_str() && new != owner.as_str(),
        Err(err) => {
            tracing::warn!(%err, "malformed NameOwnerChanged ignored");
            false
        }
    }
}
