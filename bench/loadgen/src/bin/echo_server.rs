//! echo_server: the reference row of `bench/net.py`'s echo benchmarks — an echo server with no
//! Python and no event loop library: one thread, epoll, non-blocking sockets, what a
//! hand-written C server does. It bounds what any loop can reach on this machine: the kernel's
//! share of each request is the same for every server, and this one adds almost nothing to it.
//!
//!   echo_server [--lifetime SECONDS]
//!
//! Listens on 127.0.0.1 on a free port, prints `PORT <n>` once it accepts, and serves until it
//! is killed (SIGTERM) or the lifetime runs out. Each readable connection gets one `recv` into a
//! 256 KiB buffer (as oxloop's transports read) and its data written straight back; what the
//! socket does not take waits for it to be writable, and reading from that connection waits
//! too. TCP_NODELAY is set on each connection, as asyncio's transports set it.

#[path = "../server_args.rs"]
mod server_args;

use std::collections::HashMap;
use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::time::Instant;

const READ_SIZE: usize = 256 * 1024;
const LISTENER: u64 = u64::MAX;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: `value` lives across the call; a failure leaves the option as it was.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A listening socket on 127.0.0.1 and the port it got.
fn listen() -> io::Result<(RawFd, u16)> {
    // SAFETY: plain socket calls on a descriptor this function owns; `addr` and `len` live
    // across the calls that write them.
    unsafe {
        let fd = cvt(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        let mut addr: libc::sockaddr_in = mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sa = (&mut addr as *mut libc::sockaddr_in).cast::<libc::sockaddr>();
        cvt(libc::bind(fd, sa, len))?;
        cvt(libc::listen(fd, 1024))?;
        cvt(libc::getsockname(fd, sa, &mut len))?;
        Ok((fd, u16::from_be(addr.sin_port)))
    }
}

struct Server {
    epoll: RawFd,
    /// Per connection, what the socket did not take yet.
    pending: HashMap<RawFd, Vec<u8>>,
    buf: Vec<u8>,
}

impl Server {
    fn watch(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` lives across the call.
        cvt(unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut ev) }).map(drop)
    }

    fn accept(&mut self, listener: RawFd) -> io::Result<()> {
        loop {
            // SAFETY: accept4 with no address wanted.
            let fd = unsafe {
                libc::accept4(
                    listener,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let err = io::Error::last_os_error();
                return match err.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                    _ if err.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                    _ => Err(err),
                };
            }
            set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
            self.watch(libc::EPOLL_CTL_ADD, fd, fd as u64, libc::EPOLLIN as u32)?;
        }
    }

    fn close(&mut self, fd: RawFd) {
        self.pending.remove(&fd);
        // SAFETY: closing a descriptor this server accepted; the close ends its registration.
        unsafe { libc::close(fd) };
    }

    /// Write `data` to `fd`; true when it all went. What did not is kept for later.
    fn send(&mut self, fd: RawFd, data: &[u8]) -> io::Result<bool> {
        let mut sent = 0;
        while sent < data.len() {
            // SAFETY: writes from a live slice.
            let n = unsafe { libc::write(fd, data[sent..].as_ptr().cast(), data.len() - sent) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => return Err(err),
                }
            }
            sent += n as usize;
        }
        if sent == data.len() {
            return Ok(true);
        }
        self.pending.insert(fd, data[sent..].to_vec());
        self.watch(libc::EPOLL_CTL_MOD, fd, fd as u64, libc::EPOLLOUT as u32)?;
        Ok(false)
    }

    fn readable(&mut self, fd: RawFd) -> io::Result<()> {
        // SAFETY: reads into the server's buffer, at most its length.
        let n = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
        if n == 0 {
            self.close(fd);
            return Ok(());
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ => {
                    self.close(fd);
                    Ok(())
                }
            };
        }
        let data = mem::take(&mut self.buf);
        let result = self.send(fd, &data[..n as usize]);
        self.buf = data;
        if result.is_err() {
            self.close(fd);
        }
        Ok(())
    }

    fn writable(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(data) = self.pending.remove(&fd) else {
            return Ok(());
        };
        match self.send(fd, &data) {
            Ok(true) => self.watch(libc::EPOLL_CTL_MOD, fd, fd as u64, libc::EPOLLIN as u32),
            Ok(false) => Ok(()),
            Err(_) => {
                self.close(fd);
                Ok(())
            }
        }
    }
}

fn main() -> Result<(), String> {
    let lifetime = server_args::lifetime("echo_server")?;
    let fail = |e: io::Error| e.to_string();
    let (listener, port) = listen().map_err(fail)?;
    // SAFETY: epoll_create1 returns a new descriptor or -1.
    let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).map_err(fail)?;
    let mut server = Server {
        epoll,
        pending: HashMap::new(),
        buf: vec![0; READ_SIZE],
    };
    server
        .watch(
            libc::EPOLL_CTL_ADD,
            listener,
            LISTENER,
            libc::EPOLLIN as u32,
        )
        .map_err(fail)?;
    println!("PORT {port}");
    let deadline = Instant::now() + lifetime;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while Instant::now() < deadline {
        // SAFETY: `events` has room for the count given.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 1000) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err.to_string());
        }
        for ev in &events[..n as usize] {
            let (token, flags) = (ev.u64, ev.events);
            let result = if token == LISTENER {
                server.accept(listener)
            } else if flags & libc::EPOLLOUT as u32 != 0 {
                server.writable(token as RawFd)
            } else {
                server.readable(token as RawFd)
            };
            result.map_err(fail)?;
        }
    }
    Ok(())
}
