//! echo_server_uring: `echo_server` over io_uring instead of epoll — the same echo (one receive
//! of up to 256 KiB per connection, written straight back, `TCP_NODELAY`), with the receives,
//! sends and accepts submitted and reaped in batches, one `io_uring_enter` per batch. It shows
//! what a server saves in system calls on this machine: the kernel's TCP work per request stays.
//!
//!   echo_server_uring [--lifetime SECONDS]
//!
//! Prints `PORT <n>`, serves 127.0.0.1 until killed or the lifetime runs out. Not part of
//! `net.py`'s rows; run it by hand with `loadgen echo --addr 127.0.0.1:PORT`.

#[path = "../server_args.rs"]
mod server_args;

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};

const READ_SIZE: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
}

fn user_data(op: Op, fd: RawFd) -> u64 {
    ((op as u64) << 32) | u64::from(fd as u32)
}

fn decode(data: u64) -> (u64, RawFd) {
    (data >> 32, (data & 0xffff_ffff) as u32 as RawFd)
}

/// A connection's buffer: `len` bytes received, `sent` of them written back so far.
struct Conn {
    buf: Vec<u8>,
    len: usize,
    sent: usize,
}

impl Conn {
    fn recv(&mut self, fd: RawFd) -> squeue::Entry {
        opcode::Recv::new(types::Fd(fd), self.buf.as_mut_ptr(), self.buf.len() as u32)
            .build()
            .user_data(user_data(Op::Recv, fd))
    }

    fn send(&self, fd: RawFd) -> squeue::Entry {
        let rest = &self.buf[self.sent..self.len];
        opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(user_data(Op::Send, fd))
    }
}

fn accept(listener: RawFd) -> squeue::Entry {
    opcode::Accept::new(
        types::Fd(listener),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .flags(libc::SOCK_CLOEXEC)
    .build()
    .user_data(user_data(Op::Accept, listener))
}

struct Server {
    ring: IoUring,
    conns: HashMap<RawFd, Conn>,
}

impl Server {
    fn submit(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry points to is a connection's, kept until the connection
        // is closed, which happens only once its one operation in flight has completed.
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.ring.submit()?; // the queue is full: hand it to the kernel, then retry
                                 // SAFETY: as above.
            unsafe { self.ring.submission().push(&entry) }
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        Ok(())
    }

    fn close(&mut self, fd: RawFd) {
        self.conns.remove(&fd);
        // SAFETY: a descriptor this server accepted, with no operation in flight.
        unsafe { libc::close(fd) };
    }

    fn completed(&mut self, op: u64, fd: RawFd, res: i32, listener: RawFd) -> io::Result<()> {
        if op == Op::Accept as u64 {
            if res >= 0 {
                let one: libc::c_int = 1;
                // SAFETY: `one` lives across the call.
                unsafe {
                    libc::setsockopt(
                        res,
                        libc::IPPROTO_TCP,
                        libc::TCP_NODELAY,
                        (&one as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
                let mut conn = Conn {
                    buf: vec![0; READ_SIZE],
                    len: 0,
                    sent: 0,
                };
                let entry = conn.recv(res);
                self.conns.insert(res, conn);
                self.submit(entry)?;
            }
            return self.submit(accept(listener));
        }
        let Some(conn) = self.conns.get_mut(&fd) else {
            return Ok(());
        };
        let entry = if op == Op::Recv as u64 {
            if res <= 0 {
                self.close(fd);
                return Ok(());
            }
            (conn.len, conn.sent) = (res as usize, 0);
            conn.send(fd)
        } else {
            if res < 0 {
                self.close(fd);
                return Ok(());
            }
            conn.sent += res as usize;
            if conn.sent < conn.len {
                conn.send(fd)
            } else {
                conn.recv(fd)
            }
        };
        self.submit(entry)
    }
}

fn main() -> Result<(), String> {
    let deadline = Instant::now() + server_args::lifetime("echo_server_uring")?;
    let fail = |e: io::Error| e.to_string();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    let port = listener.local_addr().map_err(fail)?.port();
    let lfd = listener.as_raw_fd();
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(256)
        .or_else(|_| IoUring::new(256))
        .map_err(fail)?;
    let mut server = Server {
        ring,
        conns: HashMap::new(),
    };
    server.submit(accept(lfd)).map_err(fail)?;
    println!("PORT {port}");
    let mut done = Vec::new();
    let wait = types::Timespec::new().sec(1);
    while Instant::now() < deadline {
        let args = types::SubmitArgs::new().timespec(&wait);
        match server.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
        done.clear();
        done.extend(
            server
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result())),
        );
        for &(data, res) in &done {
            let (op, fd) = decode(data);
            server.completed(op, fd, res, lfd).map_err(fail)?;
        }
    }
    Ok(())
}
