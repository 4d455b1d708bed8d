//! oxloop's Python-free core: the epoll [`poller`] and its [`registry`] of watched descriptors,
//! the [`timers`] heap and the write [`buffers`].
//!
//! Nothing in this crate knows about Python or asyncio; the `oxloop` extension crate builds the
//! event loop on top of it. Everything here is unit-tested with `cargo test -p oxloop-core`.

pub mod buffers;
pub mod poller;
pub mod registry;
pub mod timers;

/// A map keyed by file descriptor (or signal number). It is looked up for every event the
/// poller reports, several times a request: FxHash is a multiply and a rotate where std's
/// SipHash costs about 70 instructions per lookup, and descriptors are not attacker-chosen.
pub type FdMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;
