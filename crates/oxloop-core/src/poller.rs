//! A thin epoll wrapper with an eventfd waker: level-triggered, or edge-triggered on request.
//!
//! Guarantees:
//! - Level-triggered by default, like Python's `selectors.EpollSelector`: a descriptor that stays
//!   readable is reported on every [`Poller::wait`].
//! - With [`Interest::edge`] (`EPOLLET`), a descriptor is reported once for each change the kernel
//!   signals (data arrived, space freed, a hang-up), and on registering it when it is ready; the
//!   caller must then consume until the descriptor is drained or watch it in another way. Such a
//!   registration also asks for urgent data (`EPOLLPRI`, [`Event::urgent`]) and the peer's
//!   hang-up (`EPOLLRDHUP`, [`Event::hangup`]): after either a short read no longer means
//!   drained (a TCP read stops at the urgent mark; data read, the end of the stream is left).
//! - Readiness is mapped as `selectors` maps it: any event other than `EPOLLOUT` makes a descriptor
//!   readable, any event other than `EPOLLIN` makes it writable (so `EPOLLHUP`/`EPOLLERR` wake both).
//! - One system call per [`Poller::wait`]; no timerfd, no re-arming.
//! - [`Waker::wake`] may be called from any thread; it makes a blocked `wait` return.
//! - Each registration carries a 32-bit generation, reported back in [`Event::gen`], so a caller
//!   can tell a registration it made from an older one of a descriptor number since reused.
//!
//! The poller does not own the descriptors it watches and keeps no table of them: the kernel's
//! is the only one. [`crate::registry`] keeps the caller's view and the policy.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// What a registered descriptor is watched for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
    /// Edge-triggered (see the module's guarantees); meaningful only with `read` or `write`.
    pub edge: bool,
}

impl Interest {
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
        edge: false,
    };
    pub const READ: Interest = Interest {
        read: true,
        write: false,
        edge: false,
    };
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
        edge: false,
    };

    /// Watched for nothing (whatever `edge` says).
    pub fn is_empty(self) -> bool {
        !self.read && !self.write
    }

    fn epoll_flags(self) -> u32 {
        let mut flags = 0;
        if self.edge {
            flags |= (libc::EPOLLET | libc::EPOLLPRI | libc::EPOLLRDHUP) as u32;
        }
        if self.read {
            flags |= libc::EPOLLIN as u32;
        }
        if self.write {
            flags |= libc::EPOLLOUT as u32;
        }
        flags
    }
}

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub fd: RawFd,
    /// The generation given when the descriptor was registered (0 for the waker).
    pub gen: u32,
    pub readable: bool,
    pub writable: bool,
    /// Urgent (out-of-band) data is pending; asked for by edge-triggered registrations only.
    pub urgent: bool,
    /// The peer hung up or the descriptor has an error (`EPOLLRDHUP`, `EPOLLHUP`, `EPOLLERR`;
    /// the first asked for by edge-triggered registrations only).
    pub hangup: bool,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wakes a [`Poller`] blocked in [`Poller::wait`], from any thread.
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Make the poller's current or next `wait` return. Never blocks.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let ret = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            // A full counter means a wake-up is already pending.
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Consume pending wake-ups so the eventfd stops being readable.
    pub fn drain(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from an eventfd we own; errors (EAGAIN) ignored.
        unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8);
        }
    }

    /// The eventfd, as reported in [`Event::fd`] when a wake-up arrives.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An epoll instance with a built-in [`Waker`].
#[derive(Debug)]
pub struct Poller {
    epfd: OwnedFd,
    waker: Waker,
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain system calls; on success each returns a fresh descriptor we then own.
        let epfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let efd = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let poller = Poller {
            epfd,
            waker: Waker { fd: Arc::new(efd) },
        };
        poller.register_waker()?;
        Ok(poller)
    }

    fn register_waker(&self) -> io::Result<()> {
        self.register(self.waker.fd(), Interest::READ, 0)
    }

    /// Replace the epoll instance by an empty one (only the waker registered), dropping every
    /// registration, including any the kernel keeps for a descriptor closed while duplicated
    /// (which no `epoll_ctl` can reach any more). The waker stays the same.
    pub fn reset(&mut self) -> io::Result<()> {
        // SAFETY: a plain system call; on success it returns a fresh descriptor we then own.
        let epfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        self.epfd = epfd;
        self.register_waker()
    }

    /// A handle that wakes this poller from any thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, interest: Interest, gen: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.epoll_flags(),
            u64: (u64::from(gen) << 32) | u64::from(fd as u32),
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Start watching `fd`, reporting `gen` with its events. Fails with the OS error (EBADF,
    /// EPERM for regular files, EEXIST).
    pub fn register(&self, fd: RawFd, interest: Interest, gen: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, gen)
    }

    /// Change what a registered `fd` is watched for, and the generation it reports (ENOENT if
    /// the descriptor's file is not registered).
    pub fn reregister(&self, fd: RawFd, interest: Interest, gen: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, gen)
    }

    /// Stop watching `fd`.
    pub fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, Interest::default(), 0)
    }

    /// Wait for readiness, at most `timeout` (`None`: forever), appending reports to `events`.
    ///
    /// `buf` is scratch space reused across calls; its capacity bounds the reports of one call.
    /// An interrupted wait (EINTR) returns `Ok(0)`, so the caller can check for signals.
    pub fn wait(
        &self,
        buf: &mut Vec<libc::epoll_event>,
        timeout: Option<Duration>,
        events: &mut Vec<Event>,
    ) -> io::Result<usize> {
        let timeout_ms: libc::c_int = match timeout {
            None => -1,
            Some(t) => {
                // Round up, as selectors does, so a timer is never polled for just before it is due.
                let ms = t.as_nanos().div_ceil(1_000_000);
                ms.min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        if buf.capacity() == 0 {
            buf.reserve(1024);
        }
        buf.clear();
        let cap = buf.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: the kernel writes at most `cap` events into the buffer's spare capacity.
        let n =
            unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), buf.as_mut_ptr(), cap, timeout_ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err);
        }
        // SAFETY: epoll_wait initialised the first `n` entries.
        unsafe { buf.set_len(n as usize) };
        let not_out = !(libc::EPOLLOUT as u32);
        let not_in = !(libc::EPOLLIN as u32);
        let hangup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        for ev in buf.iter() {
            let flags = ev.events;
            let token = ev.u64;
            events.push(Event {
                fd: token as u32 as RawFd,
                gen: (token >> 32) as u32,
                readable: flags & not_out != 0,
                writable: flags & not_in != 0,
                urgent: flags & libc::EPOLLPRI as u32 != 0,
                hangup: flags & hangup != 0,
            });
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    const READ: Interest = Interest::READ;
    const READ_WRITE: Interest = Interest {
        read: true,
        write: true,
        edge: false,
    };

    fn wait(p: &Poller, timeout: Option<Duration>) -> Vec<Event> {
        let mut buf = Vec::new();
        let mut events = Vec::new();
        p.wait(&mut buf, timeout, &mut events).unwrap();
        events
    }

    #[test]
    fn timeout_expires_with_no_events() {
        let p = Poller::new().unwrap();
        let t = Instant::now();
        assert!(wait(&p, Some(Duration::from_millis(20))).is_empty());
        assert!(t.elapsed() >= Duration::from_millis(19));
    }

    #[test]
    fn level_triggered_read_reports_until_consumed() {
        let p = Poller::new().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        p.register(b.as_raw_fd(), READ, 0).unwrap();
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
        a.write_all(b"x").unwrap();
        for _ in 0..3 {
            let ev = wait(&p, Some(Duration::ZERO));
            assert_eq!(
                ev,
                vec![Event {
                    fd: b.as_raw_fd(),
                    gen: 0,
                    readable: true,
                    writable: false,
                    urgent: false,
                    hangup: false
                }]
            );
        }
        let mut byte = [0u8; 1];
        b.read_exact(&mut byte).unwrap();
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
    }

    #[test]
    fn edge_triggered_read_reports_each_arrival_once() {
        let p = Poller::new().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        let edge = Interest { edge: true, ..READ };
        p.register(fd, edge, 0).unwrap();
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
        a.write_all(b"x").unwrap();
        assert_eq!(wait(&p, Some(Duration::ZERO)).len(), 1);
        // Not consumed, yet not reported again until something new arrives.
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
        a.write_all(b"y").unwrap();
        assert_eq!(wait(&p, Some(Duration::ZERO)).len(), 1);
        // Re-registering a ready descriptor reports it, in either mode.
        p.reregister(fd, edge, 1).unwrap();
        assert_eq!(wait(&p, Some(Duration::ZERO))[0].gen, 1);
        p.reregister(fd, READ, 2).unwrap();
        assert_eq!(wait(&p, Some(Duration::ZERO)).len(), 1);
        assert_eq!(wait(&p, Some(Duration::ZERO)).len(), 1);
        let mut two = [0u8; 2];
        b.read_exact(&mut two).unwrap();
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
    }

    #[test]
    fn edge_triggered_registrations_hear_of_urgent_data() {
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let p = Poller::new().unwrap();
        let edge = Interest { edge: true, ..READ };
        p.register(b.as_raw_fd(), edge, 0).unwrap();
        // SAFETY: send of one byte from a live buffer on a connected socket.
        let n = unsafe { libc::send(a.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
        assert_eq!(n, 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        let ev = loop {
            let ev = wait(&p, Some(Duration::from_millis(100)));
            if !ev.is_empty() || Instant::now() > deadline {
                break ev;
            }
        };
        assert!(ev[0].urgent && ev[0].readable);
        // A level-triggered registration does not ask for it.
        p.reregister(b.as_raw_fd(), READ, 1).unwrap();
        let ev = wait(&p, Some(Duration::ZERO));
        assert!(ev.iter().all(|e| !e.urgent));
    }

    #[test]
    fn reregister_and_deregister() {
        let p = Poller::new().unwrap();
        let (_a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        p.register(fd, READ, 0).unwrap();
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
        p.reregister(fd, READ_WRITE, 7).unwrap();
        assert_eq!(
            wait(&p, Some(Duration::ZERO)),
            vec![Event {
                fd,
                gen: 7,
                readable: false,
                writable: true,
                urgent: false,
                hangup: false
            }]
        );
        p.deregister(fd).unwrap();
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
    }

    #[test]
    fn hangup_wakes_readers_and_writers() {
        let p = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        p.register(fd, READ, 0).unwrap();
        drop(a);
        let ev = wait(&p, Some(Duration::ZERO));
        assert_eq!(ev.len(), 1);
        assert!(ev[0].readable && ev[0].hangup);
    }

    #[test]
    fn errors_are_os_errors() {
        let p = Poller::new().unwrap();
        let err = p.register(1_000_000, READ, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        let (_a, b) = UnixStream::pair().unwrap();
        p.register(b.as_raw_fd(), READ, 0).unwrap();
        let err = p.register(b.as_raw_fd(), READ, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    }

    #[test]
    fn waker_wakes_from_another_thread() {
        let p = Poller::new().unwrap();
        let w = p.waker();
        let t = Instant::now();
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake().unwrap();
        });
        let ev = wait(&p, Some(Duration::from_secs(10)));
        th.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(ev[0].fd, p.waker().fd());
        p.waker().drain();
        assert!(wait(&p, Some(Duration::ZERO)).is_empty());
    }
}
