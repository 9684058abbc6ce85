//! Client-mode grammar (garcon-host.md §15, §19 hints 29-39) and exit codes against the
//! crostini-host stand-in over a unix socket.

use super::*;

use std::time::Duration;

use crostini_common::Address;
use crostini_host::{HostConfig, Payload, RunningHost};
use tonic::Status;

use crate::cli::VALUE_SWITCHES;

const TOKEN: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";

fn line(args: &[&str]) -> CommandLine {
    CommandLine::parse(
        std::iter::once("garcon").chain(args.iter().copied()),
        VALUE_SWITCHES,
    )
}

fn command(args: &[&str]) -> Result<ClientCommand, UsageError> {
    ClientCommand::from_command_line(&line(args), Path::new("/nonexistent-cwd"))
}

#[test]
fn url_without_arguments_or_with_value_only_is_usage_error() {
    assert_eq!(command(&["--client", "--url"]), Err(UsageError::MissingUrl));
    assert_eq!(
        command(&["--client", "--url=https://a"]),
        Err(UsageError::MissingUrl)
    );
}

#[test]
fn url_swallows_switches_and_keeps_after_double_dash() {
    assert_eq!(
        command(&["--client", "--url", "https://a", "-x", "https://b"]),
        Ok(ClientCommand::OpenUrl(vec![
            "https://a".into(),
            "https://b".into()
        ]))
    );
    assert_eq!(
        command(&["--client", "--url", "https://a", "--", "-x"]),
        Ok(ClientCommand::OpenUrl(vec![
            "https://a".into(),
            "-x".into()
        ]))
    );
    // Switches may come after the arguments.
    assert_eq!(
        command(&["https://a", "--client", "--url"]),
        Ok(ClientCommand::OpenUrl(vec!["https://a".into()]))
    );
}

#[test]
fn existing_paths_become_file_urls_others_are_sent_as_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("doc.pdf"), "%PDF").expect("write");
    std::fs::write(dir.path().join("a b.txt"), "x").expect("write");
    let real = std::fs::canonicalize(dir.path()).expect("realpath");
    assert_eq!(
        url_for_argument("doc.pdf", dir.path()),
        format!("file://{}/doc.pdf", real.display())
    );
    assert_eq!(
        url_for_argument("./a b.txt", dir.path()),
        format!("file://{}/a b.txt", real.display())
    );
    assert_eq!(url_for_argument("mailto:a@b", dir.path()), "mailto:a@b");
    assert_eq!(
        url_for_argument("www.example.com", dir.path()),
        "www.example.com"
    );
    assert_eq!(url_for_argument("missing.txt", dir.path()), "missing.txt");
    // With a scheme separator nothing is resolved, even when such a path exists.
    std::fs::create_dir_all(dir.path().join("x:")).expect("mkdir");
    assert_eq!(url_for_argument("x://y", dir.path()), "x://y");
}

#[test]
fn terminal_params_swallow_dash_e() {
    assert_eq!(
        command(&["--client", "--terminal", "-e", "vim", "notes.txt"]),
        Ok(ClientCommand::Terminal(vec![
            "vim".into(),
            "notes.txt".into()
        ]))
    );
    assert_eq!(
        command(&["--client", "--terminal"]),
        Ok(ClientCommand::Terminal(vec![]))
    );
}

#[test]
fn selectfile_switches_fill_the_request() {
    let Ok(ClientCommand::SelectFile(request)) = command(&[
        "--client",
        "--selectfile",
        "--type=folder",
        "--title=T",
        "--path=file:///home",
        "--extensions=png,jpg",
    ]) else {
        panic!("selectfile expected");
    };
    assert_eq!(request.r#type, "folder");
    assert_eq!(request.title, "T");
    assert_eq!(request.default_path, "file:///home");
    assert_eq!(request.allowed_extensions, "png,jpg");
    let Ok(ClientCommand::SelectFile(empty)) = command(&["--client", "--selectfile"]) else {
        panic!("selectfile expected");
    };
    assert_eq!(empty, SelectFileRequest::default());
}

#[test]
fn metrics_grammar() {
    assert_eq!(
        command(&[
            "--client",
            "--metrics",
            "crostini-disk-kb-read=5,crostini-swap-kb-read=7"
        ]),
        Ok(ClientCommand::Metrics(vec![
            ("crostini-disk-kb-read".into(), 5),
            ("crostini-swap-kb-read".into(), 7)
        ]))
    );
    // Only the first positional argument is used; the value splits at the first '='.
    assert_eq!(parse_metrics("a=1"), Ok(vec![("a".to_string(), 1)]));
    assert_eq!(
        command(&["--client", "--metrics", "a=1", "b=2"]),
        Ok(ClientCommand::Metrics(vec![("a".into(), 1)]))
    );
    assert!(matches!(
        command(&["--client", "--metrics"]),
        Err(UsageError::Metrics(MetricsError::MissingArgument))
    ));
    for bad in ["a", "a=", "=1", "a=1,", "a=1=2"] {
        assert!(parse_metrics(bad).is_err(), "{bad:?} must be rejected");
    }
    for bad in ["a=-1", "a=+1", "a=1.5", "a=18446744073709551616", "a= 1"] {
        assert!(
            matches!(parse_metrics(bad), Err(MetricsError::BadValue { .. })),
            "{bad:?} must be a bad value"
        );
    }
    assert_eq!(
        parse_metrics("big=18446744073709551615"),
        Ok(vec![("big".to_string(), u64::MAX)])
    );
}

#[test]
fn dispatch_priority_and_missing_switch() {
    assert!(matches!(
        command(&["--client", "--terminal", "--url", "https://a"]),
        Ok(ClientCommand::OpenUrl(_))
    ));
    assert!(matches!(
        command(&["--client", "--metrics", "--selectfile", "a=1"]),
        Ok(ClientCommand::SelectFile(_))
    ));
    assert_eq!(command(&["--client"]), Err(UsageError::MissingClientSwitch));
    assert_eq!(
        command(&["--client", "--disk_info"]),
        Err(UsageError::MissingClientSwitch)
    );
}

#[test]
fn shader_cache_grammar() {
    assert_eq!(
        command(&[
            "--client",
            "--borealis-shader-cache",
            "--app-id=42",
            "--install",
            "--mount"
        ]),
        Ok(ClientCommand::ShaderCache {
            app_id: 42,
            action: ShaderCacheAction::Install {
                mount: true,
                wait: false
            }
        })
    );
    assert_eq!(
        command(&[
            "--client",
            "--borealis-shader-cache",
            "--app-id=42",
            "--uninstall",
            "--wait"
        ]),
        Ok(ClientCommand::ShaderCache {
            app_id: 42,
            action: ShaderCacheAction::Uninstall
        })
    );
    for bad in [
        &["--client", "--borealis-shader-cache", "--install"][..],
        &[
            "--client",
            "--borealis-shader-cache",
            "--app-id=0",
            "--install",
        ],
        &[
            "--client",
            "--borealis-shader-cache",
            "--app-id=x",
            "--install",
        ],
        &["--client", "--borealis-shader-cache", "--app-id=1"],
        &[
            "--client",
            "--borealis-shader-cache",
            "--app-id=1",
            "--install",
            "--unmount",
        ],
    ] {
        assert!(
            matches!(command(bad), Err(UsageError::ShaderCache(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn exit_codes() {
    assert_eq!(Exit::Success.code(), 0);
    assert_eq!(Exit::RpcFailed.code(), 1);
    assert_eq!(Exit::Failure.code(), 255);
}

/// A stand-in host on a unix socket with the token registered and activated.
struct Host {
    running: RunningHost,
    client: HostClient,
    _dir: tempfile::TempDir,
}

async fn host() -> Host {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = Address::unix(dir.path().join("host.sock"));
    let running = RunningHost::start(HostConfig {
        container_listener: Some(address.clone()),
        ..HostConfig::default()
    })
    .await
    .expect("host starts");
    running.register_container(TOKEN, "penguin");
    let client = HostClient::new(&address, TOKEN).expect("client");
    client.container_ready(0, 0).await.expect("ready");
    Host {
        running,
        client,
        _dir: dir,
    }
}

fn rpcs(host: &RunningHost, rpc: &str) -> Vec<Payload> {
    host.events()
        .into_iter()
        .filter(|e| e.payload.rpc() == rpc)
        .map(|e| e.payload)
        .collect()
}

#[tokio::test]
async fn open_url_sends_each_and_stops_at_first_failure() {
    let host = host().await;
    let exit = run(
        ClientCommand::OpenUrl(vec!["https://a".into(), "mailto:x@y".into()]),
        &host.client,
        &mut Vec::new(),
    )
    .await;
    assert_eq!(exit, Exit::Success);

    // Hint 34: the host refuses the 2nd of 3 (scheme not allowed) ⇒ exactly 2 more rpcs, 255.
    let exit = run(
        ClientCommand::OpenUrl(vec![
            "https://b".into(),
            "gopher://c".into(),
            "https://d".into(),
        ]),
        &host.client,
        &mut Vec::new(),
    )
    .await;
    assert_eq!(exit, Exit::Failure);
    let urls: Vec<String> = rpcs(&host.running, "OpenUrl")
        .into_iter()
        .map(|p| match p {
            Payload::OpenUrl(m) => {
                assert_eq!(m.token, TOKEN);
                m.url
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(urls, ["https://a", "mailto:x@y", "https://b", "gopher://c"]);
}

#[tokio::test]
async fn terminal_sends_params() {
    let host = host().await;
    let exit = run(
        ClientCommand::Terminal(vec!["vim".into(), "notes.txt".into()]),
        &host.client,
        &mut Vec::new(),
    )
    .await;
    assert_eq!(exit, Exit::Success);
    let sent = rpcs(&host.running, "OpenTerminal");
    let [Payload::OpenTerminal(message)] = sent.as_slice() else {
        panic!("one OpenTerminal expected, got {sent:?}");
    };
    assert_eq!(message.params, ["vim", "notes.txt"]);
    assert_eq!(message.token, TOKEN);

    host.running
        .state
        .fail_next("OpenTerminal", Status::resource_exhausted("rate"));
    let exit = run(
        ClientCommand::Terminal(vec![]),
        &host.client,
        &mut Vec::new(),
    )
    .await;
    assert_eq!(exit, Exit::Failure);
}

#[tokio::test]
async fn selectfile_prints_each_file_on_its_own_line() {
    let host = host().await;
    *host.running.state.select_file_answer.lock().unwrap() =
        vec!["file:///a".to_string(), "file:///b".to_string()];
    let request = SelectFileRequest {
        r#type: "folder".into(),
        title: "T".into(),
        ..Default::default()
    };
    let mut out = Vec::new();
    let exit = run(ClientCommand::SelectFile(request), &host.client, &mut out).await;
    assert_eq!(exit, Exit::Success);
    assert_eq!(String::from_utf8(out).unwrap(), "file:///a\nfile:///b\n");
    let sent = rpcs(&host.running, "SelectFile");
    let [Payload::SelectFile(message)] = sent.as_slice() else {
        panic!("one SelectFile expected, got {sent:?}");
    };
    assert_eq!(
        (message.r#type.as_str(), message.title.as_str()),
        ("folder", "T")
    );

    // Cancelled (empty list): nothing printed, still 0.
    host.running
        .state
        .select_file_answer
        .lock()
        .unwrap()
        .clear();
    let mut out = Vec::new();
    let exit = run(
        ClientCommand::SelectFile(SelectFileRequest::default()),
        &host.client,
        &mut out,
    )
    .await;
    assert_eq!(exit, Exit::Success);
    assert!(out.is_empty());
}

#[tokio::test]
async fn metrics_exit_codes() {
    let host = host().await;
    let known = vec![
        ("crostini-disk-kb-read".to_string(), 5),
        ("crostini-swap-kb-read".to_string(), 7),
    ];
    assert_eq!(
        run(
            ClientCommand::Metrics(known.clone()),
            &host.client,
            &mut Vec::new()
        )
        .await,
        Exit::Success
    );
    let sent = rpcs(&host.running, "ReportMetrics");
    let [Payload::ReportMetrics(message)] = sent.as_slice() else {
        panic!("one ReportMetrics expected, got {sent:?}");
    };
    let pairs: Vec<(&str, i64)> = message
        .metric
        .iter()
        .map(|m| (m.name.as_str(), m.value))
        .collect();
    assert_eq!(
        pairs,
        [("crostini-disk-kb-read", 5), ("crostini-swap-kb-read", 7)]
    );

    // A status error (name with '_') ⇒ 1; OK with error=1 (unknown name) ⇒ 255.
    assert_eq!(
        run(
            ClientCommand::Metrics(vec![("bad_name".into(), 1)]),
            &host.client,
            &mut Vec::new()
        )
        .await,
        Exit::RpcFailed
    );
    assert_eq!(
        run(
            ClientCommand::Metrics(vec![("unknown-name".into(), 1)]),
            &host.client,
            &mut Vec::new()
        )
        .await,
        Exit::Failure
    );
}

#[tokio::test]
async fn host_down_gives_255_except_metrics_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = HostClient::new(&Address::unix(dir.path().join("nobody.sock")), TOKEN)
        .expect("lazy client")
        .with_timeout(Duration::from_secs(5));
    let mut out = Vec::new();
    assert_eq!(
        run(
            ClientCommand::OpenUrl(vec!["https://a".into()]),
            &client,
            &mut out
        )
        .await,
        Exit::Failure
    );
    assert_eq!(
        run(ClientCommand::Terminal(vec![]), &client, &mut out).await,
        Exit::Failure
    );
    assert_eq!(
        run(
            ClientCommand::SelectFile(SelectFileRequest::default()),
            &client,
            &mut out
        )
        .await,
        Exit::Failure
    );
    assert_eq!(
        run(
            ClientCommand::Metrics(vec![("a".into(), 1)]),
            &client,
            &mut out
        )
        .await,
        Exit::RpcFailed
    );
    assert_eq!(
        run(
            ClientCommand::ShaderCache {
                app_id: 1,
                action: ShaderCacheAction::Uninstall
            },
            &client,
            &mut out
        )
        .await,
        Exit::Failure
    );
    assert!(out.is_empty());
}
