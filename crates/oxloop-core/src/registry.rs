//! What the event loop watches, and what epoll has been told: removals are deferred to the next
//! poll, so a descriptor watched again before then costs one `epoll_ctl` or none instead of two.
//!
//! `sock_recv` in a loop is the case this serves: each call that finds no data watches the socket,
//! and its reader is removed again when the data came — and the next call watches it again, in
//! the same lap. Applied at once, as `selectors` does, that is an `EPOLL_CTL_DEL` and an
//! `EPOLL_CTL_ADD` per message.
//!
//! Guarantees:
//! - [`Registry::wait`] reports only what is wanted at the time it polls: deferred removals are
//!   applied first, and an event of a registration the registry did not make (see below) is
//!   dropped.
//! - Watching a descriptor again before the removal is applied costs nothing when the caller
//!   vouches that the descriptor still names the same file (`same_file`); otherwise one
//!   `EPOLL_CTL_MOD`, falling back to `EPOLL_CTL_ADD` when the file changed (the kernel forgot the
//!   old one when it was closed).
//! - epoll registers files, not numbers: a descriptor closed while a duplicate keeps its file
//!   open stays registered, beyond the reach of `epoll_ctl`. Each registration carries a
//!   generation; an event whose descriptor is not watched, or whose generation is not the
//!   current one, comes from such a leftover, and the registry then rebuilds the epoll instance
//!   from its table ([`Registry::rebuilds`] counts it), so a leftover can neither spin the loop
//!   nor wake another descriptor's callback.
//! - A descriptor its owner is about to close ([`Registry::closing`], then [`Registry::forget`]
//!   once closed) costs no `epoll_ctl` at all: the close ends its registration.
//! - An edge-triggered registration that reports urgent data becomes level-triggered for as
//!   long as the descriptor stays watched: its caller reads until a short read, and a TCP read
//!   stops short at the urgent mark, with more left that no new edge would report. A hang-up
//!   ([`Event::hangup`]) leaves it edge-triggered: the end of the stream comes after the data,
//!   so a caller told of one reads on past short reads, to the end of the stream or an error.
//!
//! The registry holds no callbacks: the caller keeps those, by descriptor, and says here what
//! each descriptor is wanted for.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::poller::{Event, Interest, Poller, Waker};
use crate::FdMap;

struct Slot {
    /// What the caller wants; empty while a removal is deferred.
    wanted: Interest,
    /// What the kernel was told (empty: not registered, after a rebuild failed to re-add it).
    kernel: Interest,
    gen: u32,
    /// Urgent data was reported: `edge` is ignored from then on (see the module's guarantees).
    level_only: bool,
    /// Not wanted, and to be closed before it is watched again ([`Registry::closing`]): its
    /// removal waits for [`Registry::forget`], and its events are dropped meanwhile.
    closing: bool,
}

/// The descriptors watched, and the epoll instance that watches them.
pub struct Registry {
    poller: Poller,
    slots: FdMap<RawFd, Slot>,
    /// Descriptors whose removal is deferred to the next poll (some may be wanted again since).
    deferred: Vec<RawFd>,
    next_gen: u32,
    rebuilds: u64,
    raw: Vec<Event>,
}

fn is_subset(a: Interest, b: Interest) -> bool {
    (!a.read || b.read) && (!a.write || b.write) && a.edge == b.edge
}

impl Registry {
    pub fn new() -> io::Result<Self> {
        Ok(Registry {
            poller: Poller::new()?,
            slots: FdMap::default(),
            deferred: Vec::new(),
            next_gen: 1,
            rebuilds: 0,
            raw: Vec::new(),
        })
    }

    /// A handle that wakes [`Registry::wait`] from any thread.
    pub fn waker(&self) -> Waker {
        self.poller.waker()
    }

    /// How often a leftover registration made the registry rebuild its epoll instance.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    fn gen(&mut self) -> u32 {
        let gen = self.next_gen;
        // 0 is the waker's.
        self.next_gen = self.next_gen.checked_add(1).unwrap_or(1);
        gen
    }

    /// Tell the kernel to watch `fd` for `wanted` (not empty), given what it was told before
    /// (`known`); returns the generation used. With `verify`, `fd` may name another file by now,
    /// so even an unchanged interest is submitted: MOD finds out (ENOENT) and ADD follows.
    fn submit(
        &mut self,
        fd: RawFd,
        wanted: Interest,
        known: Option<(Interest, u32)>,
        verify: bool,
    ) -> io::Result<u32> {
        if let Some((kernel, gen)) = known.filter(|(k, _)| *k != Interest::default()) {
            if kernel == wanted && !verify {
                return Ok(gen);
            }
            match self.poller.reregister(fd, wanted, gen) {
                Ok(()) => return Ok(gen),
                // The file was closed (the kernel forgot it) and the number reused: a new one.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        let gen = self.gen();
        match self.poller.register(fd, wanted, gen) {
            Ok(()) => Ok(gen),
            // Registered already, by a registration this table forgot: take it over.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.poller.reregister(fd, wanted, gen).map(|()| gen)
            }
            Err(e) => Err(e),
        }
    }

    /// Watch `fd` for `wanted`; an empty `wanted` stops watching it (at the next poll).
    ///
    /// `same_file`: the caller knows `fd` names the same open file as when it last stopped
    /// watching it (it holds the socket object, and it is not closed), so a deferred removal can
    /// simply be taken back. On error nothing changes.
    pub fn set(&mut self, fd: RawFd, mut wanted: Interest, same_file: bool) -> io::Result<()> {
        let empty = Interest::NONE;
        if wanted.is_empty() {
            wanted = empty;
        }
        let known = self
            .slots
            .get(&fd)
            .map(|s| (s.wanted, s.kernel, s.gen, s.level_only));
        let Some((was, kernel, gen, level_only)) = known else {
            if wanted != empty {
                let gen = self.submit(fd, wanted, None, false)?;
                self.slots.insert(
                    fd,
                    Slot {
                        wanted,
                        kernel: wanted,
                        gen,
                        level_only: false,
                        closing: false,
                    },
                );
            }
            return Ok(());
        };
        wanted.edge &= !level_only;
        if wanted == empty {
            if was != empty {
                if let Some(s) = self.slots.get_mut(&fd) {
                    s.wanted = empty;
                }
                self.deferred.push(fd);
            }
            return Ok(());
        }
        let deferred = was == empty;
        let gen = if deferred && same_file && kernel != empty && is_subset(wanted, kernel) {
            // Taken back before the removal was applied; an extra interest the kernel still
            // has is narrowed now, or it would wake every poll.
            if kernel != wanted {
                self.poller.reregister(fd, wanted, gen)?;
            }
            gen
        } else {
            self.submit(fd, wanted, Some((kernel, gen)), deferred)?
        };
        let slot = self.slots.get_mut(&fd).expect("slot looked up above");
        slot.wanted = wanted;
        slot.kernel = wanted;
        slot.gen = gen;
        slot.closing = false;
        Ok(())
    }

    /// `fd`, no longer wanted, will be closed before it is watched again, and then forgotten
    /// ([`Registry::forget`]): its removal is not applied at the next poll but left to the close,
    /// and what it reports until then is dropped. A descriptor still wanted is left as it is.
    pub fn closing(&mut self, fd: RawFd) {
        if let Some(s) = self.slots.get_mut(&fd) {
            s.closing = s.wanted == Interest::default();
        }
    }

    /// `fd` is about to be closed and no other descriptor names its file: drop what is known of
    /// it without an `epoll_ctl` (closing the file ends its registration). Should a duplicate
    /// exist after all, what it leaves behind is a leftover as any other (see the module's
    /// guarantees). Only for a descriptor no longer wanted; a wanted one is left as it is.
    pub fn forget(&mut self, fd: RawFd) {
        if self
            .slots
            .get(&fd)
            .is_some_and(|s| s.wanted == Interest::default())
        {
            self.slots.remove(&fd);
        }
    }

    /// Whether `fd` is watched (a deferred removal counts as removed).
    #[cfg(test)]
    fn is_watched(&self, fd: RawFd) -> bool {
        self.slots
            .get(&fd)
            .is_some_and(|s| s.wanted != Interest::default())
    }

    /// Watch `fd` level-triggered from now on (see the module's guarantees).
    fn make_level_triggered(&mut self, fd: RawFd) {
        let Some(slot) = self.slots.get_mut(&fd) else {
            return;
        };
        slot.level_only = true;
        slot.wanted.edge = false;
        let level = Interest {
            edge: false,
            ..slot.kernel
        };
        let gen = slot.gen;
        slot.kernel = level;
        // The re-registration reports the descriptor again if it is still readable. It fails
        // only for a descriptor closed while watched, whose registration is gone or a leftover.
        let _ = self.poller.reregister(fd, level, gen);
    }

    /// Apply the deferred removals.
    fn apply_deferred(&mut self) {
        for fd in std::mem::take(&mut self.deferred) {
            if let Some(slot) = self.slots.get(&fd) {
                if slot.wanted == Interest::default() && !slot.closing {
                    if slot.kernel != Interest::default() {
                        // The descriptor may be closed by now; like selectors, ignore that.
                        let _ = self.poller.deregister(fd);
                    }
                    self.slots.remove(&fd);
                }
            }
        }
    }

    /// A fresh epoll instance with exactly what is wanted registered.
    fn rebuild(&mut self) -> io::Result<()> {
        self.rebuilds += 1;
        self.poller.reset()?;
        self.deferred.clear();
        self.slots.retain(|_, s| s.wanted != Interest::default());
        let fds: Vec<(RawFd, Interest)> =
            self.slots.iter().map(|(fd, s)| (*fd, s.wanted)).collect();
        for (fd, wanted) in fds {
            let gen = self.gen();
            // A descriptor closed while still watched cannot be registered again; it stays
            // wanted, unregistered, until the caller stops or starts watching it again.
            let kernel = match self.poller.register(fd, wanted, gen) {
                Ok(()) => wanted,
                Err(_) => Interest::default(),
            };
            if let Some(s) = self.slots.get_mut(&fd) {
                s.kernel = kernel;
                s.gen = gen;
            }
        }
        Ok(())
    }

    /// Apply the deferred removals, then wait as [`Poller::wait`] does, appending to `events`
    /// the reports of wanted descriptors and of the waker.
    pub fn wait(
        &mut self,
        buf: &mut Vec<libc::epoll_event>,
        timeout: Option<Duration>,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        if !self.deferred.is_empty() {
            self.apply_deferred();
        }
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        let result = self.poller.wait(buf, timeout, &mut raw);
        let waker_fd = self.poller.waker().fd();
        let mut leftover = false;
        let mut to_level = Vec::new();
        for ev in raw.iter() {
            let current = if ev.fd == waker_fd && ev.gen == 0 {
                true
            } else {
                match self.slots.get(&ev.fd) {
                    // Its own registration, waiting for the close: nothing to report.
                    Some(s) if s.closing && s.gen == ev.gen => continue,
                    Some(s) => {
                        if ev.urgent && s.kernel.edge {
                            to_level.push(ev.fd);
                        }
                        s.gen == ev.gen && s.wanted != Interest::default()
                    }
                    None => false,
                }
            };
            if current {
                events.push(*ev);
            } else {
                leftover = true;
            }
        }
        self.raw = raw;
        for fd in to_level {
            self.make_level_triggered(fd);
        }
        result?;
        if leftover {
            self.rebuild()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    const NONE: Interest = Interest::NONE;
    const READ: Interest = Interest::READ;
    const WRITE: Interest = Interest::WRITE;
    const EDGE_READ: Interest = Interest {
        read: true,
        write: false,
        edge: true,
    };

    fn wait(r: &mut Registry) -> Vec<Event> {
        let mut buf = Vec::new();
        let mut events = Vec::new();
        r.wait(&mut buf, Some(Duration::ZERO), &mut events).unwrap();
        events
    }

    /// Close `old` and give its number to a duplicate of `new`, in one step (dup2), so that no
    /// other test thread can take the number in between.
    fn reuse_number(old: UnixStream, new: &UnixStream) -> OwnedFd {
        let fd = old.into_raw_fd();
        // SAFETY: `fd` is ours (taken from `old`); dup2 closes its file and puts a duplicate of
        // `new`'s there, which the returned OwnedFd then owns.
        unsafe {
            assert_eq!(libc::dup2(new.as_raw_fd(), fd), fd);
            OwnedFd::from_raw_fd(fd)
        }
    }

    fn fds(events: &[Event]) -> Vec<RawFd> {
        events.iter().map(|e| e.fd).collect()
    }

    #[test]
    fn removal_applies_at_the_next_poll() {
        let mut r = Registry::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        r.set(fd, READ, false).unwrap();
        a.write_all(b"x").unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        r.set(fd, NONE, false).unwrap();
        assert!(!r.is_watched(fd));
        assert!(wait(&mut r).is_empty());
        assert!(wait(&mut r).is_empty());
        assert_eq!(r.rebuilds(), 0);
    }

    #[test]
    fn watching_again_before_the_poll_keeps_the_registration() {
        let mut r = Registry::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        for same_file in [true, false] {
            r.set(fd, READ, false).unwrap();
            r.set(fd, NONE, false).unwrap();
            r.set(fd, READ, same_file).unwrap();
            a.write_all(b"x").unwrap();
            assert_eq!(fds(&wait(&mut r)), vec![fd]);
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut &b, &mut byte).unwrap();
        }
        // Taken back for less than the kernel has: narrowed, so writability does not wake.
        r.set(fd, NONE, false).unwrap();
        r.set(
            fd,
            Interest {
                read: true,
                write: true,
                edge: false,
            },
            false,
        )
        .unwrap();
        r.set(fd, NONE, false).unwrap();
        r.set(fd, READ, true).unwrap();
        assert!(wait(&mut r).is_empty());
        r.set(fd, WRITE, false).unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        assert_eq!(r.rebuilds(), 0);
    }

    #[test]
    fn a_reused_number_is_registered_anew() {
        let mut r = Registry::new().unwrap();
        let (_a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        r.set(fd, READ, false).unwrap();
        r.set(fd, NONE, false).unwrap();
        let (mut c, d) = UnixStream::pair().unwrap();
        // The number now names another file; the old one is closed, so the kernel forgets it.
        let d2 = reuse_number(b, &d);
        assert_eq!(d2.as_raw_fd(), fd);
        r.set(fd, READ, false).unwrap();
        c.write_all(b"x").unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        assert_eq!(r.rebuilds(), 0);
    }

    #[test]
    fn a_leftover_of_a_duplicated_descriptor_is_dropped() {
        let mut r = Registry::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        let keep = b.try_clone().unwrap(); // a duplicate keeps the file, and its registration
        r.set(fd, READ, false).unwrap();
        r.set(fd, NONE, false).unwrap();
        drop(b);
        a.write_all(b"x").unwrap();
        // The deregistration fails (EBADF); the leftover reports, is dropped, the instance rebuilt.
        assert!(wait(&mut r).is_empty());
        assert_eq!(r.rebuilds(), 1);
        assert!(wait(&mut r).is_empty());
        assert_eq!(r.rebuilds(), 1);
        drop(keep);
    }

    #[test]
    fn a_leftover_never_wakes_the_new_owner_of_its_number() {
        let mut r = Registry::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        let keep = b.try_clone().unwrap();
        r.set(fd, READ, false).unwrap();
        r.set(fd, NONE, false).unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        let d2 = reuse_number(b, &d);
        r.set(fd, READ, false).unwrap(); // the new file, nothing to read
        a.write_all(b"x").unwrap(); // the old file becomes readable
        assert!(wait(&mut r).is_empty());
        assert_eq!(r.rebuilds(), 1);
        assert!(r.is_watched(fd));
        assert!(wait(&mut r).is_empty());
        drop((keep, d2));
    }

    #[test]
    fn switching_between_edge_and_level_reports_what_is_ready() {
        let mut r = Registry::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        r.set(fd, EDGE_READ, false).unwrap();
        a.write_all(b"x").unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        assert!(wait(&mut r).is_empty());
        // To level-triggered and back, also through a removal taken back: each change of mode
        // is submitted, and the kernel reports the data still there.
        r.set(fd, READ, false).unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        r.set(fd, NONE, false).unwrap();
        r.set(fd, EDGE_READ, true).unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        assert!(wait(&mut r).is_empty());
        assert_eq!(r.rebuilds(), 0);
    }

    #[test]
    fn urgent_data_makes_an_edge_registration_level_triggered() {
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let fd = b.as_raw_fd();
        let mut r = Registry::new().unwrap();
        r.set(fd, EDGE_READ, false).unwrap();
        a.write_all(b"ab").unwrap();
        // SAFETY: send of one byte from a live buffer on a connected socket.
        assert_eq!(
            unsafe { libc::send(a.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) },
            1
        );
        a.write_all(b"cd").unwrap();
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !events.iter().any(|e: &Event| e.urgent) && std::time::Instant::now() < deadline {
            r.wait(&mut buf, Some(Duration::from_millis(50)), &mut events)
                .unwrap();
        }
        assert!(events.iter().any(|e| e.urgent));
        // The read stops short at the urgent mark, with "cd" still queued ...
        let mut got = [0u8; 16];
        assert_eq!(std::io::Read::read(&mut &b, &mut got).unwrap(), 2);
        // ... and is reported again, on every poll, until read; the mode sticks.
        r.set(fd, EDGE_READ, false).unwrap();
        for _ in 0..2 {
            assert_eq!(fds(&wait(&mut r)), vec![fd]);
        }
        assert_eq!(std::io::Read::read(&mut &b, &mut got).unwrap(), 2);
        assert_eq!(&got[..2], b"cd");
        assert!(wait(&mut r).is_empty());
    }

    #[test]
    fn a_hangup_is_reported_once_to_an_edge_registration() {
        let mut r = Registry::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        r.set(fd, EDGE_READ, false).unwrap();
        a.write_all(b"x").unwrap();
        drop(a);
        // Data and the end of the stream, in one report that says so.
        let ev = wait(&mut r);
        assert_eq!(fds(&ev), vec![fd]);
        assert!(ev[0].hangup && ev[0].readable);
        let mut got = [0u8; 16];
        assert_eq!(std::io::Read::read(&mut &b, &mut got).unwrap(), 1);
        // The short read drained the data, not the EOF, and no new edge comes: the caller, told
        // of the hang-up, reads on. No epoll_ctl was made to switch modes.
        assert!(wait(&mut r).is_empty());
        assert_eq!(std::io::Read::read(&mut &b, &mut got).unwrap(), 0);
        assert!(wait(&mut r).is_empty());
        // Watched again (after a pause, say), it is reported again.
        r.set(fd, NONE, false).unwrap();
        assert!(wait(&mut r).is_empty());
        r.set(fd, EDGE_READ, true).unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
    }

    #[test]
    fn a_forgotten_descriptor_is_not_deregistered() {
        let mut r = Registry::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        r.set(fd, READ, false).unwrap();
        r.set(fd, NONE, false).unwrap();
        r.forget(fd);
        // Closing it ends the registration; the number, reused by another socket, is watched
        // anew, and the deferred removal does not touch the new registration.
        let (c, d) = UnixStream::pair().unwrap();
        let reused = reuse_number(b, &d);
        let fd2 = reused.as_raw_fd();
        assert_eq!(fd2, fd);
        r.set(fd2, READ, false).unwrap();
        (&c).write_all(b"x").unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd2]);
        assert_eq!(r.rebuilds(), 0);
        drop(a);
        // A wanted descriptor is not forgotten.
        r.forget(fd2);
        assert!(r.is_watched(fd2));
    }

    #[test]
    fn a_closing_descriptor_waits_for_its_close() {
        let mut r = Registry::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        r.set(fd, READ, false).unwrap();
        r.set(fd, NONE, false).unwrap();
        r.closing(fd);
        // Still registered with the kernel (no removal was applied), and readable: dropped,
        // not mistaken for a leftover.
        a.write_all(b"x").unwrap();
        for _ in 0..2 {
            assert!(wait(&mut r).is_empty());
        }
        assert_eq!(r.rebuilds(), 0);
        r.forget(fd);
        drop(b);
        assert!(wait(&mut r).is_empty());
        assert_eq!(r.rebuilds(), 0);
        // Watched again before its close after all: it is reported again.
        let (mut c, d) = UnixStream::pair().unwrap();
        let fd = d.as_raw_fd();
        r.set(fd, READ, false).unwrap();
        r.set(fd, NONE, false).unwrap();
        r.closing(fd);
        r.set(fd, READ, true).unwrap();
        c.write_all(b"y").unwrap();
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
        // A wanted descriptor is not marked.
        r.closing(fd);
        assert_eq!(fds(&wait(&mut r)), vec![fd]);
    }

    #[test]
    fn errors_leave_nothing_behind() {
        let mut r = Registry::new().unwrap();
        let err = r.set(1_000_000, READ, false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert!(!r.is_watched(1_000_000));
        assert!(wait(&mut r).is_empty());
    }

    #[test]
    fn the_waker_is_reported() {
        let mut r = Registry::new().unwrap();
        r.waker().wake().unwrap();
        let ev = wait(&mut r);
        assert_eq!(fds(&ev), vec![r.waker().fd()]);
        r.waker().drain();
    }
}
