//! Pieces shared by tremplin, garcon and crostini-host: the address type, the transport layer
//! (the only code that knows sockets), logging and stop signals.

pub mod address;
pub mod logging;
pub mod signals;
pub mod transport;

pub use address::{Address, AddressError};
pub use transport::{lazy_channel, request_peer, Listener, Peer, Stream, TransportError};
