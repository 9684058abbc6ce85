//! `crostini-host serve`: the listeners, with every received call printed as one JSON line.

use anyhow::Context;
use clap::Args;
use crostini_common::signals::{StopSignal, StopSignals};
use crostini_common::transport::ListenOptions;
use crostini_common::Address;

use crate::events::Payload;
use crate::handlers::Command;
use crate::server::{
    HostConfig, RunningHost, DEFAULT_CONTAINER_LISTENER, DEFAULT_TREMPLIN_LISTENER,
};
use crate::state::Desktop;
use crate::state_dir::StateDir;
use crate::url::Share;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where garcon reports (garcon's --host-address): vsock://CID:PORT or unix:///PATH;
    /// tcp://HOST:PORT is for tests and development only (anyone who reaches the port may call).
    #[arg(long, default_value = DEFAULT_CONTAINER_LISTENER)]
    pub container_listen: Address,
    /// Where tremplin reports (tremplin's --host-address); same forms, tcp for tests and
    /// development only.
    #[arg(long, default_value = DEFAULT_TREMPLIN_LISTENER)]
    pub tremplin_listen: Address,
    /// Mode of the unix socket files, in octal (default 0600: owner only). Widen it, e.g. 0666,
    /// when garcon in an unprivileged container must connect through a bind mount.
    #[arg(long, value_name = "MODE", value_parser = parse_socket_mode)]
    pub socket_mode: Option<u32>,
    /// Do not serve ContainerListener.
    #[arg(long)]
    pub no_container_listener: bool,
    /// Do not serve TremplinListener.
    #[arg(long)]
    pub no_tremplin_listener: bool,
    /// Accept ContainerReady for this container token: CONTAINER=TOKEN (repeatable). With
    /// --tremplin-address the host asks tremplin whether the container runs, as for its own
    /// tokens; without, the container is taken as running at 127.0.0.1 (for test harnesses).
    #[arg(long = "token", value_name = "CONTAINER=TOKEN", value_parser = parse_token)]
    pub tokens: Vec<(String, String)>,
    /// Where the local VM's tremplin serves (its --listen). ContainerReady is accepted only when
    /// tremplin's GetContainerInfo says RUNNING with an IPv4 address, as cicerone does. Default:
    /// the address `crostini-host tremplin start` recorded in the state directory.
    #[arg(long, value_name = "ADDRESS")]
    pub tremplin_address: Option<Address>,
    /// Run CMD with the translated URL for OpenUrl (no shell; {url}, {container}, {user},
    /// {ipv4}, {vm} are replaced; the URL is appended without {url}). Default: print the URL on
    /// stderr. On a desktop: --url-handler xdg-open.
    #[arg(long, value_name = "CMD")]
    pub url_handler: Option<Command>,
    /// Run CMD for OpenTerminal (no shell; {params} stands for the requested command's words,
    /// appended without it; {container}, {user}, {ipv4}, {vm} are replaced). E.g.
    /// 'x-terminal-emulator -e lxc exec {container} -- sudo -iu {user} {params}'. Default:
    /// print the request on stderr.
    #[arg(long, value_name = "CMD")]
    pub terminal_handler: Option<Command>,
    /// A container path shared with the host: file:// URLs under it open the host path
    /// (repeatable). Other file:// URLs are refused.
    #[arg(long = "share", value_name = "CONTAINER_PATH=HOST_PATH")]
    pub shares: Vec<Share>,
    /// Name of the VM that unix and tcp peers belong to.
    #[arg(long, default_value = "termina")]
    pub vm_name: String,
}

fn parse_socket_mode(s: &str) -> Result<u32, String> {
    crostini_common::transport::peers::parse_socket_mode(s)
}

fn parse_token(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((c, t)) if !c.is_empty() && !t.is_empty() => Ok((c.to_string(), t.to_string())),
        _ => Err(format!("{s:?} is not CONTAINER=TOKEN")),
    }
}

pub async fn run(args: ServeArgs, state_dir: Option<StateDir>) -> anyhow::Result<()> {
    let mut signals = StopSignals::install(&[StopSignal::Term, StopSignal::Int])
        .context("installing signal handlers")?;
    let config = HostConfig {
        container_listener: (!args.no_container_listener).then(|| args.container_listen.clone()),
        tremplin_listener: (!args.no_tremplin_listener).then(|| args.tremplin_listen.clone()),
        vm_name: args.vm_name.clone(),
        listen_options: ListenOptions {
            socket_mode: args
                .socket_mode
                .unwrap_or(crostini_common::transport::peers::DEFAULT_SOCKET_MODE),
            ..ListenOptions::any_vsock_peer()
        },
        tremplin_address: args.tremplin_address.clone(),
        desktop: Desktop {
            url_handler: args.url_handler.clone(),
            terminal_handler: args.terminal_handler.clone(),
            shares: args.shares.clone(),
            print: true,
        },
    };
    let host = RunningHost::start(config)
        .await
        .context("starting the listeners")?;
    if let Some(state) = &state_dir {
        let dir = state.clone();
        *host
            .state
            .token_source
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            Some(Box::new(move |token: &str| dir.container_for_token(token)));
        let dir = state.clone();
        *host
            .state
            .tremplin_source
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(move || dir.tremplin_address()));
    }
    for (container, token) in &args.tokens {
        if args.tremplin_address.is_some() {
            host.expect_container(token, container);
        } else {
            host.register_container(token, container);
        }
    }
    if let Some(a) = host.container_listener_address() {
        eprintln!("ContainerListener on {a}");
    }
    if let Some(a) = host.tremplin_listener_address() {
        eprintln!("TremplinListener on {a}");
    }
    let mut feed = host.state.events.subscribe();
    loop {
        tokio::select! {
            event = feed.recv() => match event {
                Ok(event) => {
                    println!("{}", event.to_json_line());
                    if matches!(event.payload, Payload::ContainerReady(_)) && !event.is_ok() {
                        eprintln!(
                            "ContainerReady refused (the reason is logged above): the token must \
                             be one this host handed out (--token CONTAINER=TOKEN, or start the \
                             container with `crostini-host --state-dir` pointing at this serve's \
                             state directory), and tremplin (--tremplin-address) must say the \
                             container runs with an IPv4 address"
                        );
                    }
                    if let Some(dir) = &state_dir {
                        if let Err(e) = dir.record(&event) {
                            eprintln!("{e}");
                        }
                        if changes_status(&event.payload) {
                            if let Err(e) = dir.write_status(&host.state.registry.snapshot()) {
                                eprintln!("{e}");
                            }
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("(missed {n} events)"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            signal = signals.recv() => {
                eprintln!("{signal}: stopping");
                break;
            }
        }
    }
    host.shutdown().await;
    Ok(())
}

/// Whether a call may change what `crostini-host status` shows.
fn changes_status(payload: &Payload) -> bool {
    matches!(
        payload,
        Payload::ContainerReady(_)
            | Payload::ContainerShutdown(_)
            | Payload::TremplinContainerShutdown(_)
            | Payload::UpdateStartStatus(_)
            | Payload::UpdateStopStatus(_)
            | Payload::TremplinReady(_)
    )
}
