//! State shared by both listener services: registry, event log, rate limits, scripted failures.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crostini_common::{Address, Peer};
use tonic::{Response, Status};

use crate::events::{EventLog, Payload};
use crate::handlers::Command;
use crate::rate_limit::{Clock, FixedWindow, PerKey, SystemClock};
use crate::registry::Registry;

/// OpenUrl and OpenTerminal share one fixed window: 10 calls per 15 s (garcon-host §6.2).
pub const URL_TERMINAL_LIMIT: (u32, Duration) = (10, Duration::from_secs(15));
/// ReportMetrics: 40 requests per 60 s per VM (garcon-host §13).
pub const METRICS_LIMIT: (u32, Duration) = (40, Duration::from_secs(60));

pub struct HostState {
    pub registry: Registry,
    pub events: EventLog,
    pub url_terminal_limiter: FixedWindow,
    /// Per VM (keyed by CID), as cicerone limits ReportMetrics.
    pub metrics_limiter: PerKey,
    scripted_failures: Mutex<HashMap<String, VecDeque<Status>>>,
    /// What SelectFile answers (Chrome's file picker stands here).
    pub select_file_answer: Mutex<Vec<String>>,
    /// Consulted for tokens this process did not hand out itself (e.g. tokens recorded in a
    /// state directory by a one-shot `tremplin start`).
    pub token_source: Mutex<Option<TokenSource>>,
    /// Consulted for the local VM's tremplin address when none is configured (the address a
    /// one-shot `tremplin start` recorded in a state directory).
    pub tremplin_source: Mutex<Option<TremplinSource>>,
    pub desktop: Desktop,
}

/// What OpenUrl and OpenTerminal do on this machine.
#[derive(Debug, Clone, Default)]
pub struct Desktop {
    /// Runs with the translated URL; none: the URL is only logged (and printed by `serve`).
    pub url_handler: Option<Command>,
    /// Runs for OpenTerminal; none: the request is only logged.
    pub terminal_handler: Option<Command>,
    /// Container paths shared with the host, for `file://` URLs.
    pub shares: Vec<crate::url::Share>,
    /// Print what would be opened on stderr when no handler is configured (`serve`).
    pub print: bool,
}

/// Where the local VM's tremplin serves, when someone recorded it.
pub type TremplinSource = Box<dyn Fn() -> Option<Address> + Send + Sync>;

/// Maps a token to the container it was handed to.
pub type TokenSource = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl HostState {
    pub fn new(vm_name: &str) -> Self {
        Self::with_clock(vm_name, Arc::new(SystemClock))
    }

    pub fn with_clock(vm_name: &str, clock: Arc<dyn Clock>) -> Self {
        HostState {
            registry: Registry::new(vm_name),
            events: EventLog::default(),
            url_terminal_limiter: FixedWindow::new(
                URL_TERMINAL_LIMIT.0,
                URL_TERMINAL_LIMIT.1,
                clock.clone(),
            ),
            metrics_limiter: PerKey::new(METRICS_LIMIT.0, METRICS_LIMIT.1, clock),
            scripted_failures: Mutex::new(HashMap::new()),
            select_file_answer: Mutex::new(Vec::new()),
            token_source: Mutex::new(None),
            tremplin_source: Mutex::new(None),
            desktop: Desktop::default(),
        }
    }

    /// The local VM's tremplin address recorded by someone else, if any.
    pub fn external_tremplin_address(&self) -> Option<Address> {
        let source = self
            .tremplin_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        source.as_ref().and_then(|lookup| lookup())
    }

    /// The container `token` was handed to by someone else, if the token source knows it.
    pub fn external_token(&self, token: &str) -> Option<String> {
        let source = self.token_source.lock().unwrap_or_else(|e| e.into_inner());
        source.as_ref().and_then(|lookup| lookup(token))
    }

    /// Makes the next call of `rpc` (wire name) fail with `status`, after its checks ran.
    pub fn fail_next(&self, rpc: &str, status: Status) {
        self.scripted_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(rpc.to_string())
            .or_default()
            .push_back(status);
    }

    fn take_scripted_failure(&self, rpc: &str) -> Option<Status> {
        self.scripted_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(rpc)
            .and_then(VecDeque::pop_front)
    }

    /// Records the call and turns the checks' verdict into the reply.
    pub fn answer<T>(
        &self,
        peer: &Peer,
        payload: Payload,
        verdict: Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        let verdict = match self.take_scripted_failure(payload.rpc()) {
            Some(status) => Err(status),
            None => verdict,
        };
        let summary = verdict.as_ref().map(|_| ()).map_err(Clone::clone);
        let container = match payload.token() {
            Some(token) => self.registry.container_for_token(token),
            None => payload.container_name().map(str::to_string),
        };
        self.events
            .record(describe_peer(peer), container, payload, &summary);
        verdict.map(Response::new)
    }
}

/// The shape of every listener handler: take the peer and the message, run `check` (which
/// yields the verdict), record the call with its verdict, answer.
macro_rules! handle {
    ($self:ident, $req:ident, $variant:ident, |$peer:ident, $msg:ident| $check:expr) => {{
        let $peer = crostini_common::request_peer(&$req);
        let $msg = $req.into_inner();
        let verdict = $check;
        $self
            .state
            .answer(&$peer, crate::events::Payload::$variant($msg), verdict)
    }};
}
pub(crate) use handle;

pub fn describe_peer(peer: &Peer) -> String {
    match peer {
        Peer::Vsock { cid, port } => format!("vsock:{cid}:{port}"),
        Peer::Unix { uid, pid } => format!(
            "unix:uid={},pid={}",
            uid.map_or("?".into(), |u| u.to_string()),
            pid.map_or("?".into(), |p| p.to_string())
        ),
        Peer::Tcp(addr) => format!("tcp:{addr}"),
        Peer::Unknown => "unknown".to_string(),
    }
}
