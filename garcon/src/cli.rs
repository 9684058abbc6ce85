//! From a parsed [`CommandLine`] to what the process should do (garcon-host.md §3.1 step 1,
//! §15.2), and the client-mode driver.
//!
//! Upstream switches: `--server`, `--client`, `--allow_any_user`, `--no_startup_notify`, and the
//! client-mode switches of [`crate::client`]. Our own switches (not upstream), which also accept
//! `--name VALUE`: `--host-address`, `--listen`, `--sftp-listen`, `--token-file`,
//! `--sftp-server`, `--allow-vsock-cid`, `--socket-mode`, `--update-initial-delay-secs`,
//! `--update-interval-secs` (background updates, for tests), plus `--vsock-any-peer`,
//! `--log-stderr` and `--help`.
//!
//! Test-only knobs (clearly non-upstream environment variables, garcon-host.md §2.1):
//! `GARCON_TEST_TOKEN_WAIT_MS` (how long the server polls for the token) and
//! `GARCON_TEST_READY_RETRY_MS` (how long ContainerReady is retried).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crostini_common::address::VMADDR_CID_ANY;
use crostini_common::transport::peers::{parse_cids, parse_socket_mode};
use crostini_common::transport::{ListenOptions, VsockPeers};
use crostini_common::{Address, AddressError};

use crate::client::{self, ClientCommand, Exit, UsageError};
use crate::cmdline::CommandLine;
use crate::config::{
    Paths, DEFAULT_HOST_ADDRESS, DEFAULT_TOKEN_FILE, GARCON_PORT_FIRST, GARCON_PORT_LAST,
    TOKEN_WAIT,
};
use crate::host::HostClient;
use crate::startup::{ListenSpec, RetryPolicy, ServerConfig};
use crate::token::read_token;

/// Our switches that take a value, also as the next element.
pub const VALUE_SWITCHES: &[&str] = &[
    "host-address",
    "listen",
    "sftp-listen",
    "token-file",
    "sftp-server",
    "allow-vsock-cid",
    "socket-mode",
    "update-initial-delay-secs",
    "update-interval-secs",
];

/// `VMADDR_PORT_ANY`: the kernel picks the vsock port.
pub const VMADDR_PORT_ANY: u32 = u32::MAX;

pub const USAGE: &str = "\
usage: garcon --server [--allow_any_user] [--no_startup_notify]
                       [--host-address ADDR] [--listen ADDR] [--sftp-listen ADDR]
                       [--token-file PATH] [--sftp-server PATH] [--log-stderr]
                       [--allow-vsock-cid CID[,CID...]] [--vsock-any-peer] [--socket-mode MODE]
       garcon --client --url URL...
       garcon --client --terminal [ARG...]
       garcon --client --selectfile [--type=TYPE] [--title=TITLE] [--path=PATH] [--extensions=a,b]
       garcon --client --metrics name=value[,name=value...]
       garcon --client --borealis-shader-cache --app-id=ID (--install [--mount] [--wait] | --unmount [--wait] | --uninstall)

ADDR is vsock://CID:PORT (CID may be `any`), unix:///PATH or tcp://HOST:PORT; tcp is for
tests and development only (no peer check: anyone who reaches the port may call).
  --host-address  the host's ContainerListener (default vsock://2:8889)
  --listen        garcon's own gRPC server (default: first free vsock port 10000..=19999 on any CID)
  --sftp-listen   the sftp listener (default: vsock any CID, kernel-chosen port; with a tcp
                  --listen, the same host with port 0; with a unix --listen, PATH.sftp)
  --token-file    the container token (default /dev/.container_token)
  --sftp-server   program spawned per sftp connection (default /usr/lib/openssh/sftp-server)
  --allow-vsock-cid  also accept vsock peers with these CIDs (only the host, CID 2, by default)
  --vsock-any-peer   accept vsock peers of every CID
  --socket-mode   mode of garcon's unix socket files, octal (default 0600: owner only)
  --update-initial-delay-secs, --update-interval-secs  background package updates (for tests):
                  first run after start (default 300) and then every (default 86400) seconds
Exit codes: 0 success, 1 ReportMetrics rpc failed, 255 any other error.";

/// What this invocation asks for.
#[derive(Debug)]
pub enum Invocation {
    Help,
    /// Server mode, and who may connect to its listeners (set process-wide by `main`).
    Server(Box<ServerConfig>, ListenOptions),
    Client(ClientOptions),
}

/// Client mode: where to dial and where the token is; the command is chosen after the token
/// is read (§15.2).
#[derive(Debug)]
pub struct ClientOptions {
    pub host_address: Address,
    pub token_file: PathBuf,
    pub line: CommandLine,
}

/// A command line rejected before anything else happens (exit 255).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("exactly one of --server and --client is required\n{USAGE}")]
    Mode,
    #[error("--{switch} needs a value")]
    MissingValue { switch: &'static str },
    #[error("--{switch}: {source}")]
    Address {
        switch: &'static str,
        source: AddressError,
    },
    #[error("--{switch} {value:?} is not a whole number of seconds (an interval: at least 1)")]
    Seconds { switch: &'static str, value: String },
    #[error("{name}={value:?} is not a number of milliseconds")]
    TestKnob { name: &'static str, value: String },
    #[error("--{switch}: {reason}")]
    Peers {
        switch: &'static str,
        reason: String,
    },
}

/// Parses `argv` (with argv[0]) into an invocation.
pub fn parse_invocation<I, S>(argv: I) -> Result<Invocation, CliError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let line = CommandLine::parse(argv, VALUE_SWITCHES);
    invocation_from(line, &|name| std::env::var(name).ok())
}

fn invocation_from(
    line: CommandLine,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, CliError> {
    let server = line.has("server");
    let client = line.has("client");
    if line.has("help") && !server && !client {
        return Ok(Invocation::Help);
    }
    if server == client {
        return Err(CliError::Mode);
    }
    let host_address =
        address_switch(&line, "host-address")?.map_or_else(default_host_address, Ok)?;
    let token_file =
        path_switch(&line, "token-file")?.unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
    if client {
        return Ok(Invocation::Client(ClientOptions {
            host_address,
            token_file,
            line,
        }));
    }

    let listen = match address_switch(&line, "listen")? {
        Some(address) => ListenSpec::Fixed(address),
        None => ListenSpec::Probe {
            base: Address::vsock(VMADDR_CID_ANY, GARCON_PORT_FIRST),
            first: GARCON_PORT_FIRST,
            last: GARCON_PORT_LAST,
        },
    };
    let sftp_listen = match address_switch(&line, "sftp-listen")? {
        Some(address) => address,
        None => default_sftp_listen(&listen),
    };
    let mut paths = Paths::from_env();
    if let Some(sftp_server) = path_switch(&line, "sftp-server")? {
        paths.sftp_server = sftp_server;
    }
    let token_wait = test_knob(env, "GARCON_TEST_TOKEN_WAIT_MS")?.unwrap_or(TOKEN_WAIT);
    let mut ready_retry = RetryPolicy::default();
    if let Some(total) = test_knob(env, "GARCON_TEST_READY_RETRY_MS")? {
        ready_retry.give_up_after = total;
    }
    let mut config = ServerConfig::new(host_address, listen, sftp_listen, token_file, paths);
    config.allow_any_user = line.has("allow_any_user");
    config.no_startup_notify = line.has("no_startup_notify");
    config.token_wait = token_wait;
    config.ready_retry = ready_retry;
    config.log_stderr = line.has("log-stderr");
    if let Some(schedule) = config.updates.as_mut() {
        if let Some(delay) = secs_switch(&line, "update-initial-delay-secs")? {
            schedule.initial_delay = delay;
        }
        if let Some(interval) = secs_switch(&line, "update-interval-secs")? {
            schedule.interval = interval;
        }
    }
    Ok(Invocation::Server(Box::new(config), listen_options(&line)?))
}

/// `--allow-vsock-cid`, `--vsock-any-peer` and `--socket-mode`.
fn listen_options(line: &CommandLine) -> Result<ListenOptions, CliError> {
    let mut options = ListenOptions::default();
    if line.has("vsock-any-peer") {
        options.vsock_peers = VsockPeers::Any;
    } else if let Some(value) = line.value("allow-vsock-cid") {
        let cids = parse_cids(value).map_err(|reason| CliError::Peers {
            switch: "allow-vsock-cid",
            reason,
        })?;
        options.vsock_peers = VsockPeers::host_and(cids);
    }
    if let Some(value) = line.value("socket-mode") {
        options.socket_mode = parse_socket_mode(value).map_err(|reason| CliError::Peers {
            switch: "socket-mode",
            reason,
        })?;
    }
    Ok(options)
}

fn default_host_address() -> Result<Address, CliError> {
    Address::from_str(DEFAULT_HOST_ADDRESS).map_err(|source| CliError::Address {
        switch: "host-address",
        source,
    })
}

/// The sftp listener that goes with garcon's own listener (see [`USAGE`]).
pub fn default_sftp_listen(listen: &ListenSpec) -> Address {
    let base = match listen {
        ListenSpec::Fixed(address) => address,
        ListenSpec::Probe { base, .. } => base,
    };
    match base {
        Address::Vsock { cid, .. } => Address::vsock(*cid, VMADDR_PORT_ANY),
        Address::Tcp { host, .. } => Address::tcp(host.clone(), 0),
        Address::Unix(path) => {
            let mut sftp = path.clone().into_os_string();
            sftp.push(".sftp");
            Address::Unix(PathBuf::from(sftp))
        }
    }
}

/// A whole number of seconds (an interval must be at least 1 s).
fn secs_switch(line: &CommandLine, switch: &'static str) -> Result<Option<Duration>, CliError> {
    let Some(value) = line.value(switch) else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(secs) if secs > 0 || switch != "update-interval-secs" => {
            Ok(Some(Duration::from_secs(secs)))
        }
        _ => Err(CliError::Seconds {
            switch,
            value: value.to_owned(),
        }),
    }
}

fn address_switch(line: &CommandLine, switch: &'static str) -> Result<Option<Address>, CliError> {
    match line.value(switch) {
        None => Ok(None),
        Some("") => Err(CliError::MissingValue { switch }),
        Some(value) => Address::from_str(value)
            .map(Some)
            .map_err(|source| CliError::Address { switch, source }),
    }
}

fn path_switch(line: &CommandLine, switch: &'static str) -> Result<Option<PathBuf>, CliError> {
    match line.value(switch) {
        None => Ok(None),
        Some("") => Err(CliError::MissingValue { switch }),
        Some(value) => Ok(Some(PathBuf::from(value))),
    }
}

fn test_knob(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Duration>, CliError> {
    match env(name) {
        None => Ok(None),
        Some(value) => value
            .parse::<u64>()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| CliError::TestKnob { name, value }),
    }
}

/// Client mode (§15.2): read the token (missing ⇒ 255 before any dispatch), choose the command,
/// build the lazy host channel and run. Returns the exit code.
pub async fn run_client(options: ClientOptions, cwd: &Path, out: &mut dyn Write) -> Exit {
    let token = match read_token(&options.token_file) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!("{error}");
            return Exit::Failure;
        }
    };
    let command = match ClientCommand::from_command_line(&options.line, cwd) {
        Ok(command) => command,
        Err(error) => {
            report_usage_error(&error);
            return Exit::Failure;
        }
    };
    let host = match HostClient::new(&options.host_address, token) {
        Ok(host) => host,
        Err(error) => {
            tracing::error!("{error}");
            return Exit::Failure;
        }
    };
    client::run(command, &host, out).await
}

fn report_usage_error(error: &UsageError) {
    tracing::error!("{error}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(args: &[&str]) -> Result<Invocation, CliError> {
        invocation_with_env(args, &[])
    }

    fn invocation_with_env(args: &[&str], vars: &[(&str, &str)]) -> Result<Invocation, CliError> {
        let argv = std::iter::once("garcon").chain(args.iter().copied());
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        invocation_from(CommandLine::parse(argv, VALUE_SWITCHES), &env)
    }

    fn server(args: &[&str]) -> ServerConfig {
        match invocation(args) {
            Ok(Invocation::Server(config, _)) => *config,
            other => panic!("expected server mode, got {other:?}"),
        }
    }

    #[test]
    fn neither_or_both_modes_is_an_error() {
        assert!(matches!(invocation(&[]), Err(CliError::Mode)));
        assert!(matches!(
            invocation(&["--server", "--client"]),
            Err(CliError::Mode)
        ));
        assert!(matches!(invocation(&["--url", "x"]), Err(CliError::Mode)));
    }

    #[test]
    fn update_schedule_defaults_to_five_minutes_then_daily_and_has_switches() {
        let schedule = server(&["--server"]).updates.expect("updates on");
        assert_eq!(schedule.initial_delay, Duration::from_secs(300));
        assert_eq!(schedule.interval, Duration::from_secs(86400));
        let schedule = server(&[
            "--server",
            "--update-initial-delay-secs",
            "0",
            "--update-interval-secs=7",
        ])
        .updates
        .expect("updates on");
        assert_eq!(schedule.initial_delay, Duration::ZERO);
        assert_eq!(schedule.interval, Duration::from_secs(7));
        for bad in [
            &["--server", "--update-interval-secs", "0"][..],
            &["--server", "--update-interval-secs", "x"],
            &["--server", "--update-initial-delay-secs", "-1"],
        ] {
            assert!(
                matches!(invocation(bad), Err(CliError::Seconds { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn help_alone_prints_usage() {
        assert!(matches!(invocation(&["--help"]), Ok(Invocation::Help)));
    }

    #[test]
    fn server_defaults_follow_the_spec() {
        let config = server(&["--server"]);
        assert_eq!(config.host_address, Address::vsock(2, 8889));
        assert_eq!(
            config.listen,
            ListenSpec::Probe {
                base: Address::vsock(VMADDR_CID_ANY, 10000),
                first: 10000,
                last: 19999
            }
        );
        assert_eq!(
            config.sftp_listen,
            Address::vsock(VMADDR_CID_ANY, VMADDR_PORT_ANY)
        );
        assert_eq!(config.token_file, PathBuf::from("/dev/.container_token"));
        assert_eq!(
            config.paths.sftp_server,
            PathBuf::from("/usr/lib/openssh/sftp-server")
        );
        assert_eq!(config.token_wait, Duration::from_secs(60));
        assert!(!config.allow_any_user);
        assert!(!config.no_startup_notify);
    }

    #[test]
    fn server_flags_with_space_or_equals() {
        let config = server(&[
            "--server",
            "--allow_any_user",
            "--no_startup_notify",
            "--listen",
            "tcp://127.0.0.1:0",
            "--host-address=unix:///run/h.sock",
            "--token-file",
            "/tmp/token",
            "--sftp-server",
            "/bin/cat",
        ]);
        assert_eq!(
            config.listen,
            ListenSpec::Fixed(Address::tcp("127.0.0.1", 0))
        );
        assert_eq!(config.sftp_listen, Address::tcp("127.0.0.1", 0));
        assert_eq!(config.host_address, Address::unix("/run/h.sock"));
        assert_eq!(config.token_file, PathBuf::from("/tmp/token"));
        assert_eq!(config.paths.sftp_server, PathBuf::from("/bin/cat"));
        assert!(config.allow_any_user && config.no_startup_notify);
    }

    fn listen_options_of(args: &[&str]) -> Result<ListenOptions, CliError> {
        match invocation(args)? {
            Invocation::Server(_, options) => Ok(options),
            other => panic!("expected server mode, got {other:?}"),
        }
    }

    #[test]
    fn peer_switches_default_to_the_host_and_0600_and_widen() {
        assert_eq!(
            listen_options_of(&["--server"]).expect("parses"),
            ListenOptions::default()
        );
        let options =
            listen_options_of(&["--server", "--allow-vsock-cid", "3,4", "--socket-mode=0660"])
                .expect("parses");
        assert_eq!(options.vsock_peers, VsockPeers::host_and([3, 4]));
        assert_eq!(options.socket_mode, 0o660);
        let options = listen_options_of(&["--server", "--vsock-any-peer"]).expect("parses");
        assert_eq!(options.vsock_peers, VsockPeers::Any);
        let err = listen_options_of(&["--server", "--socket-mode", "0777x"]).expect_err("bad");
        assert!(err.to_string().contains("--socket-mode"), "{err}");
        let err = listen_options_of(&["--server", "--allow-vsock-cid", "any"]).expect_err("bad");
        assert!(err.to_string().contains("--allow-vsock-cid"), "{err}");
        assert!(USAGE.contains("tests and development only"));
    }

    #[test]
    fn unix_listen_puts_sftp_next_to_it() {
        let config = server(&["--server", "--listen", "unix:///run/g.sock"]);
        assert_eq!(config.sftp_listen, Address::unix("/run/g.sock.sftp"));
        let config = server(&[
            "--server",
            "--listen",
            "unix:///run/g.sock",
            "--sftp-listen",
            "tcp://127.0.0.1:0",
        ]);
        assert_eq!(config.sftp_listen, Address::tcp("127.0.0.1", 0));
    }

    #[test]
    fn bad_addresses_are_clear_errors() {
        let err =
            invocation(&["--server", "--host-address", "vsock://two:8889"]).expect_err("bad cid");
        let text = err.to_string();
        assert!(text.contains("--host-address"), "{text}");
        assert!(text.contains("vsock://two:8889"), "{text}");
        let err = invocation(&["--server", "--listen=bogus"]).expect_err("bad listen");
        assert!(err.to_string().contains("--listen"));
        let err = invocation(&["--client", "--url", "--host-address=tcp://h"])
            .expect_err("client checks the host address too");
        assert!(err.to_string().contains("--host-address"));
        let err = invocation(&["--server", "--listen"]).expect_err("no value");
        assert!(matches!(err, CliError::MissingValue { switch: "listen" }));
    }

    #[test]
    fn test_knobs_shorten_waits() {
        let config = match invocation_with_env(
            &["--server"],
            &[
                ("GARCON_TEST_TOKEN_WAIT_MS", "250"),
                ("GARCON_TEST_READY_RETRY_MS", "1500"),
            ],
        ) {
            Ok(Invocation::Server(config, _)) => config,
            other => panic!("expected server, got {other:?}"),
        };
        assert_eq!(config.token_wait, Duration::from_millis(250));
        assert_eq!(
            config.ready_retry.give_up_after,
            Duration::from_millis(1500)
        );
        let err = invocation_with_env(&["--server"], &[("GARCON_TEST_TOKEN_WAIT_MS", "x")])
            .expect_err("bad knob");
        assert!(err.to_string().contains("GARCON_TEST_TOKEN_WAIT_MS"));
    }

    #[test]
    fn client_keeps_its_command_line_for_dispatch() {
        match invocation(&["https://a", "--client", "--url", "--token-file=/t"]) {
            Ok(Invocation::Client(options)) => {
                assert_eq!(options.token_file, PathBuf::from("/t"));
                assert_eq!(options.line.args(), ["https://a"]);
                assert_eq!(options.host_address, Address::vsock(2, 8889));
            }
            other => panic!("expected client, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn client_without_token_exits_255_before_dispatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ClientOptions {
            // Nothing listens here; the call must not even be attempted.
            host_address: Address::unix(dir.path().join("no-host.sock")),
            token_file: dir.path().join("missing-token"),
            line: CommandLine::parse(["garcon", "--client", "--terminal"], VALUE_SWITCHES),
        };
        let mut out = Vec::new();
        let exit = run_client(options, dir.path(), &mut out).await;
        assert_eq!(exit, Exit::Failure);
        assert_eq!(exit.code(), 255);
    }
}
