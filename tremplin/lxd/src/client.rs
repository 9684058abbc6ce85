//! The HTTP-over-Unix-socket core: connection, envelope decoding, error mapping.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

use crate::error::{LxdError, Result};
use crate::events::Liveness;
use crate::operation::Operation;

/// Default timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response body read into memory (JSON envelopes, logs, file API contents).
/// Large payloads (backups, exports, images) are streamed to files instead.
pub const MAX_BUFFERED_BODY: u64 = 64 * 1024 * 1024;

/// Default LXD directory when `LXD_DIR` is unset.
pub const DEFAULT_LXD_DIR: &str = "/var/lib/lxd";

/// Request body type used on the wire.
pub(crate) type Body = BoxBody<Bytes, io::Error>;

/// Client of one LXD daemon, reached over its Unix socket.
///
/// Cheap to clone; every request opens its own connection (LXD handles many).
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    liveness: Liveness,
}

/// LXD's response envelope.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub status_code: i64,
    pub operation: String,
    pub error_code: i64,
    pub error: String,
    pub metadata: serde_json::Value,
}

/// A raw (non-enveloped) answer: status, headers and the whole body.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub(crate) fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn empty_body() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Percent-encodes a query value (keeps unreserved characters and `/`).
pub(crate) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub(crate) fn what(method: &Method, path: &str) -> String {
    format!("{method} {path}")
}

impl Client {
    /// Client for the LXD socket at `socket_path` with the default 30 s request timeout.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket_path.into(),
            timeout: DEFAULT_TIMEOUT,
            liveness: Liveness::default(),
        }
    }

    /// Client for `$LXD_DIR/unix.socket` (`LXD_DIR` defaults to `/var/lib/lxd`).
    pub fn from_env() -> Self {
        Client::new(default_socket_path())
    }

    /// Sets the per-request timeout (also the per-chunk inactivity timeout of streams).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the ping interval and silence deadline of event subscriptions.
    pub fn with_event_liveness(mut self, liveness: Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// The liveness settings of event subscriptions.
    pub fn event_liveness(&self) -> Liveness {
        self.liveness
    }

    /// The socket this client connects to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connects a fresh Unix stream (used for HTTP and for websockets).
    pub(crate) async fn connect_stream(&self, what: &str) -> Result<UnixStream> {
        match tokio::time::timeout(self.timeout, UnixStream::connect(&self.socket)).await {
            Err(_) => Err(LxdError::timeout(
                format!("connecting for {what}"),
                self.timeout,
            )),
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    LxdError::NotRunning {
                        socket: self.socket.clone(),
                        what: what.to_string(),
                        source: e,
                    }
                }
                _ => LxdError::io(
                    format!("connecting to {} for {what}", self.socket.display()),
                    e,
                ),
            }),
        }
    }

    async fn connect_http(&self, what: &str) -> Result<SendRequest<Body>> {
        let stream = self.connect_stream(what).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| LxdError::protocol(what, format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("LXD connection ended with error: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends one request and returns the response head with a streaming body.
    /// No timeout here: callers wrap it.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<http::Response<Incoming>> {
        let w = what(&method, path);
        let mut sender = self.connect_http(&w).await?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "lxd");
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| LxdError::protocol(&w, format!("bad header {name}: {e}")))?;
            builder = builder.header(*name, value);
        }
        let req = builder
            .body(body)
            .map_err(|e| LxdError::protocol(&w, format!("building request: {e}")))?;
        sender.send_request(req).await.map_err(|e| {
            if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
                LxdError::io(
                    &w,
                    io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()),
                )
            } else {
                LxdError::protocol(&w, e.to_string())
            }
        })
    }

    /// Sends a request and reads the whole body, all within `timeout`.
    pub(crate) async fn request_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
        timeout: Duration,
    ) -> Result<RawResponse> {
        let w = what(&method, path);
        let fut = async {
            let resp = self.send(method, path, headers, body).await?;
            read_response_capped(resp, MAX_BUFFERED_BODY, &w).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(LxdError::timeout(w.clone(), timeout)),
        }
    }

    /// Sends a JSON (or empty) request and decodes the envelope; errors are mapped.
    pub(crate) async fn request_envelope(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        etag: Option<&str>,
        timeout: Duration,
    ) -> Result<(Envelope, Option<String>)> {
        let w = what(&method, path);
        let mut headers: Vec<(&str, String)> = Vec::new();
        let body = match body {
            Some(v) => {
                headers.push(("content-type", "application/json".to_string()));
                full_body(serde_json::to_vec(v).map_err(|e| LxdError::Json {
                    what: w.clone(),
                    source: e,
                })?)
            }
            None => empty_body(),
        };
        if let Some(etag) = etag {
            headers.push(("if-match", etag.to_string()));
        }
        let raw = self
            .request_raw(method, path, &headers, body, timeout)
            .await?;
        let etag = raw.header("etag");
        Ok((parse_envelope(&raw, &w)?, etag))
    }

    /// Sync request returning decoded `metadata` and the ETag header.
    pub(crate) async fn sync_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        etag: Option<&str>,
    ) -> Result<(T, Option<String>)> {
        let w = what(&method, path);
        let (env, etag) = self
            .request_envelope(method, path, body, etag, self.timeout)
            .await?;
        let value = serde_json::from_value(env.metadata)
            .map_err(|e| LxdError::Json { what: w, source: e })?;
        Ok((value, etag))
    }

    /// Sync request whose metadata is ignored.
    pub(crate) async fn sync_unit(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        etag: Option<&str>,
    ) -> Result<()> {
        self.request_envelope(method, path, body, etag, self.timeout)
            .await
            .map(|_| ())
    }

    /// Request answered with an async operation.
    pub(crate) async fn async_op(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        etag: Option<&str>,
    ) -> Result<Operation> {
        let w = what(&method, path);
        let (env, _) = self
            .request_envelope(method, path, body, etag, self.timeout)
            .await?;
        operation_from_envelope(env, &w)
    }
}

/// Reads a whole response into memory, refusing a body over `limit` bytes: a declared
/// `content-length` over the limit is refused before reading, and an undeclared (chunked)
/// body is refused as soon as it passes the limit, so memory stays bounded by `limit`.
pub(crate) async fn read_response_capped(
    resp: http::Response<Incoming>,
    limit: u64,
    what: &str,
) -> Result<RawResponse> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || LxdError::BodyTooLarge {
        what: what.to_string(),
        limit,
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = resp.into_body();
    // Pre-size from the (already checked) declared length, capped to keep lies cheap.
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(1 << 20) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| LxdError::protocol(what, format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(RawResponse {
        status,
        headers,
        body: Bytes::from(buf),
    })
}

/// `$LXD_DIR/unix.socket`, `LXD_DIR` defaulting to `/var/lib/lxd`.
pub fn default_socket_path() -> PathBuf {
    let dir = std::env::var_os("LXD_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LXD_DIR));
    dir.join("unix.socket")
}

/// Decodes an envelope, turning error answers into `LxdError`.
pub(crate) fn parse_envelope(raw: &RawResponse, what: &str) -> Result<Envelope> {
    let parsed: std::result::Result<Envelope, _> = serde_json::from_slice(&raw.body);
    let env = match parsed {
        Ok(env) => env,
        Err(e) => {
            if raw.status.is_client_error() || raw.status.is_server_error() {
                let text = String::from_utf8_lossy(&raw.body);
                let message = text.trim().chars().take(500).collect::<String>();
                return Err(status_error(raw.status.as_u16(), message, what));
            }
            return Err(LxdError::Json {
                what: what.to_string(),
                source: e,
            });
        }
    };
    if env.kind == "error" || raw.status.is_client_error() || raw.status.is_server_error() {
        let code = if env.error_code > 0 {
            u16::try_from(env.error_code).unwrap_or(500)
        } else {
            raw.status.as_u16()
        };
        return Err(status_error(code, env.error, what));
    }
    Ok(env)
}

pub(crate) fn status_error(code: u16, message: String, what: &str) -> LxdError {
    if code == 404 {
        LxdError::NotFound {
            what: what.to_string(),
            message,
        }
    } else {
        LxdError::Api {
            status_code: code,
            message,
            what: what.to_string(),
        }
    }
}

/// Extracts the operation of an `async` envelope.
pub(crate) fn operation_from_envelope(env: Envelope, what: &str) -> Result<Operation> {
    if env.kind != "async" {
        return Err(LxdError::protocol(
            what,
            format!("expected an async response, got type {:?}", env.kind),
        ));
    }
    let url = env.operation.clone();
    let mut op: Operation = serde_json::from_value(env.metadata).map_err(|e| LxdError::Json {
        what: what.to_string(),
        source: e,
    })?;
    if op.id.is_empty() {
        op.id = url
            .split('?')
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
    }
    if op.id.is_empty() {
        return Err(LxdError::protocol(
            what,
            "async response without operation id",
        ));
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn encode_query_escapes_reserved_bytes() {
        assert_eq!(encode_query("/etc/os-release"), "/etc/os-release");
        assert_eq!(encode_query("/a b&c=d?é"), "/a%20b%26c%3Dd%3F%C3%A9");
    }

    #[test]
    fn parse_envelope_maps_404_to_not_found() {
        let r = raw(
            404,
            r#"{"type":"error","error":"Instance not found","error_code":404,"metadata":null}"#,
        );
        let err = parse_envelope(&r, "GET /1.0/instances/x").unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("GET /1.0/instances/x"));
    }

    #[test]
    fn parse_envelope_maps_other_errors_to_api() {
        let r = raw(
            400,
            r#"{"type":"error","error":"bad","error_code":400,"metadata":null}"#,
        );
        match parse_envelope(&r, "POST /1.0/instances").unwrap_err() {
            LxdError::Api {
                status_code,
                message,
                what,
            } => {
                assert_eq!(status_code, 400);
                assert_eq!(message, "bad");
                assert_eq!(what, "POST /1.0/instances");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parse_envelope_non_json_error_body_keeps_text() {
        let r = raw(500, "internal failure\n");
        match parse_envelope(&r, "GET /1.0").unwrap_err() {
            LxdError::Api {
                status_code,
                message,
                ..
            } => {
                assert_eq!(status_code, 500);
                assert_eq!(message, "internal failure");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parse_envelope_garbage_success_is_json_error() {
        let r = raw(200, "not json");
        assert!(matches!(
            parse_envelope(&r, "GET /1.0").unwrap_err(),
            LxdError::Json { .. }
        ));
    }

    #[test]
    fn operation_id_falls_back_to_url() {
        let env = Envelope {
            kind: "async".into(),
            operation: "/1.0/operations/abc-123".into(),
            metadata: serde_json::json!({"class": "task", "status_code": 103}),
            ..Default::default()
        };
        let op = operation_from_envelope(env, "POST x").unwrap();
        assert_eq!(op.id, "abc-123");
    }

    #[test]
    fn sync_envelope_is_not_an_operation() {
        let env = Envelope {
            kind: "sync".into(),
            ..Default::default()
        };
        assert!(matches!(
            operation_from_envelope(env, "POST x").unwrap_err(),
            LxdError::Protocol { .. }
        ));
    }
}
