//! Logging setup shared by the daemons and tools: tracing to stderr, or to syslog in production.

use std::io::{self, IsTerminal, Write};
use std::os::unix::net::UnixDatagram;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// `/dev/log`; falls back to stderr when no syslog daemon listens.
    Syslog,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
pub fn init(tag: &'static str, target: LogTarget, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let syslog = match target {
        LogTarget::Syslog => SyslogWriter::connect(tag),
        LogTarget::Stderr => None,
    };
    let result = match syslog {
        Some(writer) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .without_time()
            .with_writer(writer)
            .try_init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .try_init(),
    };
    // A second init (tests calling into binaries' setup) keeps the first subscriber.
    let _ = result;
}

/// Sends each log line as one datagram to `/dev/log` with the daemon facility.
#[derive(Clone)]
struct SyslogWriter {
    tag: &'static str,
    socket: std::sync::Arc<UnixDatagram>,
}

impl SyslogWriter {
    fn connect(tag: &'static str) -> Option<Self> {
        let socket = UnixDatagram::unbound().ok()?;
        socket.connect("/dev/log").ok()?;
        Some(SyslogWriter {
            tag,
            socket: std::sync::Arc::new(socket),
        })
    }
}

struct SyslogLine {
    writer: SyslogWriter,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        // Facility daemon (3) * 8 + severity info (6).
        let mut line = format!("<30>{}[{}]: ", self.writer.tag, std::process::id()).into_bytes();
        line.extend_from_slice(self.buf.trim_ascii_end());
        if self.writer.socket.send(&line).is_err() {
            let _ = io::stderr().write_all(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;
    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine {
            writer: self.clone(),
            buf: Vec::new(),
        }
    }
}
