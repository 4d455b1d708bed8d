//! Native halves of the transports: what runs per packet.

pub mod datagram;
pub mod stream;
