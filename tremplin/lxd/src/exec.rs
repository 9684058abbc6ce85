//! Non-interactive exec with recorded output (§4.5).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde::Serialize;

use crate::client::Client;
use crate::error::{check_name, LxdError, Result};
use crate::operation::Operation;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// argv; `argv[0]` is looked up in the container's PATH.
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Working directory inside the container.
    pub cwd: Option<String>,
    /// Run as this uid / gid (LXD default: 0).
    pub user: Option<u32>,
    pub group: Option<u32>,
    /// Maximum time for the command to finish.
    pub timeout: Duration,
}

impl ExecRequest {
    /// `argv` with an empty environment, default cwd/user and a 60 s timeout.
    pub fn new<S: AsRef<str>>(argv: &[S]) -> Self {
        ExecRequest {
            command: argv.iter().map(|s| s.as_ref().to_string()).collect(),
            environment: BTreeMap::new(),
            cwd: None,
            user: None,
            group: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.environment.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.cwd = Some(cwd.to_string());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Result of a finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Serialize)]
struct ExecBody<'a> {
    command: &'a [String],
    environment: &'a BTreeMap<String, String>,
    #[serde(rename = "wait-for-websocket")]
    wait_for_websocket: bool,
    #[serde(rename = "record-output")]
    record_output: bool,
    interactive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<u32>,
}

/// Builds the exec request body (exposed for tests).
pub(crate) fn exec_body(req: &ExecRequest) -> serde_json::Value {
    let body = ExecBody {
        command: &req.command,
        environment: &req.environment,
        wait_for_websocket: false,
        record_output: true,
        interactive: false,
        cwd: req.cwd.as_deref(),
        user: req.user,
        group: req.group,
    };
    // Serializing plain strings/maps/ints cannot fail.
    serde_json::to_value(body).unwrap_or(serde_json::Value::Null)
}

/// Reads `metadata.return` and `metadata.output` (`{"1": url, "2": url}`) of a finished exec.
pub(crate) fn exec_result(op: &Operation) -> Result<(i32, Option<String>, Option<String>)> {
    let what = format!("exec operation {}", op.id);
    let code = op
        .metadata
        .get("return")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| LxdError::protocol(&what, "no integer metadata.return"))?;
    let code = i32::try_from(code)
        .map_err(|_| LxdError::protocol(&what, format!("return code {code} out of range")))?;
    let output = op.metadata.get("output");
    let url = |k: &str| {
        output
            .and_then(|o| o.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Ok((code, url("1"), url("2")))
}

impl Client {
    /// Runs a command in a running container and returns exit code and recorded output.
    ///
    /// `POST /1.0/instances/{name}/exec` with `record-output: true`, waits (request
    /// timeout), fetches and then deletes the output logs. A command that cannot be
    /// started is reported by LXD as a failed operation or a non-zero exit code.
    pub async fn exec(&self, name: &str, req: &ExecRequest) -> Result<ExecOutput> {
        check_name(name)?;
        if req.command.is_empty() {
            return Err(LxdError::protocol(
                format!("POST /1.0/instances/{name}/exec"),
                "empty command",
            ));
        }
        let body = exec_body(req);
        let op = self
            .async_op(
                Method::POST,
                &format!("/1.0/instances/{name}/exec"),
                Some(&body),
                None,
            )
            .await?;
        let done = self.wait(&op, req.timeout).await?;
        let (exit_code, out_url, err_url) = exec_result(&done)?;
        let mut output = ExecOutput {
            exit_code,
            ..Default::default()
        };
        if let Some(url) = out_url {
            output.stdout = self.get_raw(&url).await?;
            if let Err(e) = self.delete_path(&url).await {
                tracing::debug!("could not delete exec log {url}: {e}");
            }
        }
        if let Some(url) = err_url {
            output.stderr = self.get_raw(&url).await?;
            if let Err(e) = self.delete_path(&url).await {
                tracing::debug!("could not delete exec log {url}: {e}");
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exec_body_matches_spec() {
        let req = ExecRequest::new(&["cat", "/etc/os-release"])
            .env("LANG", "C.UTF-8")
            .cwd("/root");
        assert_eq!(
            exec_body(&req),
            json!({
                "command": ["cat", "/etc/os-release"],
                "environment": {"LANG": "C.UTF-8"},
                "wait-for-websocket": false,
                "record-output": true,
                "interactive": false,
                "cwd": "/root"
            })
        );
    }

    #[test]
    fn exec_result_reads_return_and_output() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/operation_exec_done.json"
        ))
        .unwrap();
        let op: Operation = serde_json::from_str(&text).unwrap();
        let (code, out, err) = exec_result(&op).unwrap();
        assert_eq!(code, 3);
        assert_eq!(
            out.as_deref(),
            Some("/1.0/instances/c1/logs/exec_b0f737b4-2c8a-4edf-a7c1-4cc7e4e9e155.stdout")
        );
        assert!(err.unwrap().ends_with(".stderr"));
    }

    #[test]
    fn exec_result_requires_return() {
        let op = Operation {
            metadata: json!({"output": {}}),
            ..Default::default()
        };
        assert!(exec_result(&op).is_err());
    }
}
