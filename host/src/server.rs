//! Starting the host's listeners: ContainerListener (garcon reports) and TremplinListener
//! (tremplin reports), each on its own address as on ChromeOS (ports 8889 and 7778).

use std::sync::Arc;
use std::time::Duration;

use crostini_common::transport::{server_builder, ListenOptions, Listener, TransportError};
use crostini_common::Address;
use crostini_proto::vm_tools::container::container_listener_server::ContainerListenerServer;
use crostini_proto::vm_tools::tremplin::tremplin_listener_server::TremplinListenerServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::container_listener::ContainerListenerService;
use crate::events::{Event, WaitTimeout};
use crate::registry::LOCAL_VM_CID;
use crate::state::{Desktop, HostState};
use crate::tremplin_listener::TremplinListenerService;

/// Cicerone's default ContainerListener address.
pub const DEFAULT_CONTAINER_LISTENER: &str = "vsock://any:8889";
/// Cicerone's default TremplinListener address.
pub const DEFAULT_TREMPLIN_LISTENER: &str = "vsock://any:7778";

#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where garcon reports (`--host-address` of garcon). `None`: not served.
    pub container_listener: Option<Address>,
    /// Where tremplin reports (`--host-address` of tremplin). `None`: not served.
    pub tremplin_listener: Option<Address>,
    /// The VM that non-vsock peers belong to.
    pub vm_name: String,
    /// Socket mode and vsock peers of both listeners. The host accepts every vsock CID (each is
    /// a VM it serves); unix socket files get mode 0600 unless widened.
    pub listen_options: ListenOptions,
    /// Where the local VM's tremplin serves, asked at ContainerReady (GetContainerInfo). `None`:
    /// only directly registered containers ([`RunningHost::register_container`]) or a vsock VM's
    /// tremplin at `vsock:<cid>:8890`.
    pub tremplin_address: Option<Address>,
    /// What OpenUrl and OpenTerminal run.
    pub desktop: Desktop,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            container_listener: None,
            tremplin_listener: None,
            vm_name: "termina".to_string(),
            listen_options: ListenOptions::any_vsock_peer(),
            tremplin_address: None,
            desktop: Desktop::default(),
        }
    }
}

/// A running host: its listeners, its state and the record of what it received.
pub struct RunningHost {
    pub state: Arc<HostState>,
    container_listener: Option<Address>,
    tremplin_listener: Option<Address>,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl RunningHost {
    /// Binds the configured listeners and serves them in the background.
    pub async fn start(config: HostConfig) -> Result<RunningHost, TransportError> {
        let mut state = HostState::new(&config.vm_name);
        state.desktop = config.desktop.clone();
        if let Some(tremplin) = &config.tremplin_address {
            state.registry.set_tremplin(LOCAL_VM_CID, tremplin.clone());
        }
        let state = Arc::new(state);
        let mut host = RunningHost {
            state: state.clone(),
            container_listener: None,
            tremplin_listener: None,
            stop: Vec::new(),
            tasks: Vec::new(),
        };
        if let Some(address) = &config.container_listener {
            let listener = Listener::bind_with(address, config.listen_options.clone()).await?;
            host.container_listener = Some(listener.local_address().clone());
            let service =
                ContainerListenerServer::new(ContainerListenerService::new(state.clone()));
            let (tx, rx) = oneshot::channel();
            host.stop.push(tx);
            host.tasks.push(tokio::spawn(
                server_builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(listener.into_incoming(), async {
                        let _ = rx.await;
                    }),
            ));
        }
        if let Some(address) = &config.tremplin_listener {
            let listener = Listener::bind_with(address, config.listen_options.clone()).await?;
            host.tremplin_listener = Some(listener.local_address().clone());
            let service = TremplinListenerServer::new(TremplinListenerService::new(state.clone()));
            let (tx, rx) = oneshot::channel();
            host.stop.push(tx);
            host.tasks.push(tokio::spawn(
                server_builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(listener.into_incoming(), async {
                        let _ = rx.await;
                    }),
            ));
        }
        Ok(host)
    }

    /// The bound ContainerListener address (real port when 0 was asked for).
    pub fn container_listener_address(&self) -> Option<&Address> {
        self.container_listener.as_ref()
    }

    /// The bound TremplinListener address (real port when 0 was asked for).
    pub fn tremplin_listener_address(&self) -> Option<&Address> {
        self.tremplin_listener.as_ref()
    }

    /// Test harness path: makes `token` a pending token of `container` in the local VM that is
    /// taken as running at 127.0.0.1, without asking tremplin (the tests that use it run no
    /// container, or no tremplin).
    pub fn register_container(&self, token: &str, container: &str) {
        self.state.registry.add_trusted(
            LOCAL_VM_CID,
            token,
            container,
            std::net::Ipv4Addr::LOCALHOST,
        );
    }

    /// Makes `token` a pending token of `container` in the local VM, as cicerone's
    /// StartContainer does: its ContainerReady is accepted once tremplin (`tremplin_address`)
    /// says the container runs with an IPv4 address.
    pub fn expect_container(&self, token: &str, container: &str) {
        self.state
            .registry
            .add_pending(LOCAL_VM_CID, token, container);
    }

    /// The first received call matching `matches`, from the start of the record.
    pub async fn wait_for<F: Fn(&Event) -> bool>(
        &self,
        matches: F,
        timeout: Duration,
    ) -> Result<Event, WaitTimeout> {
        self.state.events.wait_for(matches, timeout).await
    }

    /// The first received call matching `matches` recorded at or after `from_seq`.
    pub async fn wait_for_from<F: Fn(&Event) -> bool>(
        &self,
        from_seq: u64,
        matches: F,
        timeout: Duration,
    ) -> Result<Event, WaitTimeout> {
        self.state
            .events
            .wait_for_from(from_seq, matches, timeout)
            .await
    }

    /// Everything received so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.state.events.snapshot()
    }

    /// Stops the listeners and waits for them to finish.
    pub async fn shutdown(mut self) {
        for tx in self.stop.drain(..) {
            let _ = tx.send(());
        }
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}
