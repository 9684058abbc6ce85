//! Dialing the guest services with cicerone's deadlines (60 s default, 120 s for long operations).

use std::time::Duration;

use crostini_common::transport::{lazy_channel, TransportError, DEFAULT_CONNECT_TIMEOUT};
use crostini_common::Address;
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::tremplin::tremplin_client::TremplinClient;
use tonic::transport::Channel;

/// Cicerone's default deadline for guest calls.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
/// Cicerone's deadline for CreateContainer, StartContainer and GetDebugInfo.
pub const LONG_DEADLINE: Duration = Duration::from_secs(120);

pub fn tremplin(address: &Address) -> Result<TremplinClient<Channel>, TransportError> {
    Ok(TremplinClient::new(lazy_channel(
        address,
        DEFAULT_CONNECT_TIMEOUT,
    )?))
}

pub fn garcon(address: &Address) -> Result<GarconClient<Channel>, TransportError> {
    Ok(GarconClient::new(lazy_channel(
        address,
        DEFAULT_CONNECT_TIMEOUT,
    )?))
}

/// A request carrying a deadline, as every cicerone call does.
pub fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}
