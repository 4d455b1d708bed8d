//! loadgen: the load generator of oxloop's network benchmarks (`bench/net.py`).
//!
//! One thread, non-blocking sockets, level-triggered epoll: on one pinned core it drives
//! 1–100 connections much faster than a Python server can answer them, so the server is
//! the bottleneck. It only ever connects to loopback addresses.
//!
//! Modes (see USAGE):
//! - `echo`: C connections; each sends a message of S bytes, waits for all S bytes to come
//!   back (checking them), then sends the next. Counts requests for D seconds (or N requests).
//! - `connect`: C slots; each opens a connection, sends S bytes, waits for the echo, closes,
//!   and starts over. Counts connections for D seconds.
//! - `idle`: opens K connections (each does one 1-byte echo, so the server has really accepted
//!   it), prints `ready`, holds them until stdin has a line or closes (or --hold seconds).
//!
//! Output, on stdout: `start` when the measured window opens (after the warm-up), `stop` when it
//! closes (in-flight requests then finish uncounted before the sockets close), and last a
//! one-line JSON object with the results, or with an "error" key (exit status 1).

use std::env;
use std::io::{self, Write};
use std::mem;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: loadgen echo    --addr 127.0.0.1:PORT [--connections 8] [--size 1024]
                       [--duration 5] [--requests 0] [--warmup 0.5] [--timeout 10]
                       [--verify-every 4]
       loadgen connect --addr 127.0.0.1:PORT [--connections 8] [--size 16]
                       [--duration 5] [--warmup 0.5] [--timeout 10] [--verify-every 4]
       loadgen idle    --addr 127.0.0.1:PORT [--count 10000] [--connections 64]
                       [--hold 60] [--timeout 10]

  --connections  echo: connections; connect: connections at once; idle: connections being
                 opened at once
  --size         bytes per message (echo, connect); idle always sends 1 byte
  --duration     seconds measured after the warm-up
  --requests     echo: stop after this many measured requests (0: no limit)
  --warmup       seconds of load before the measured window
  --timeout      fail when no request completes for this many seconds
  --count        idle: connections to open and hold
  --hold         idle: release them after this many seconds even if stdin stays open
  --verify-every echo, connect: compare the echo with what was sent for one request in
                 this many per connection, the first included (the others are
                 counted, not copied out of the kernel); 1: every request";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Echo,
    Connect,
    Idle,
}

struct Config {
    mode: Mode,
    addr: SocketAddrV4,
    connections: usize,
    size: usize,
    duration: f64,
    requests: u64,
    warmup: f64,
    timeout: f64,
    count: usize,
    hold: f64,
    verify_every: u64,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mode = match args.first().map(String::as_str) {
        Some("echo") => Mode::Echo,
        Some("connect") => Mode::Connect,
        Some("idle") => Mode::Idle,
        Some("-h" | "--help") | None => return Err(USAGE.to_string()),
        Some(other) => return Err(format!("unknown mode {other:?}\n{USAGE}")),
    };
    let mut cfg = Config {
        mode,
        addr: SocketAddrV4::new([127, 0, 0, 1].into(), 0),
        connections: match mode {
            Mode::Echo => 8,
            Mode::Connect => 8,
            Mode::Idle => 64,
        },
        size: if mode == Mode::Connect { 16 } else { 1024 },
        duration: 5.0,
        requests: 0,
        warmup: 0.5,
        timeout: 10.0,
        count: 10_000,
        hold: 60.0,
        verify_every: 4,
    };
    let mut addr = None;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || -> Result<f64, String> {
            let x = value.parse::<f64>().ok().filter(|x| x.is_finite());
            x.ok_or_else(|| format!("bad value for {flag}: {value:?}"))
        };
        let int = || -> Result<usize, String> {
            value
                .parse::<usize>()
                .map_err(|_| format!("bad value for {flag}: {value:?}"))
        };
        match flag.as_str() {
            "--addr" => {
                let a = value.parse::<SocketAddr>();
                addr = Some(a.map_err(|_| format!("bad address: {value:?}"))?);
            }
            "--connections" => cfg.connections = int()?,
            "--size" => cfg.size = int()?,
            "--duration" => cfg.duration = num()?,
            "--requests" => cfg.requests = int()? as u64,
            "--warmup" => cfg.warmup = num()?,
            "--timeout" => cfg.timeout = num()?,
            "--count" => cfg.count = int()?,
            "--hold" => cfg.hold = num()?,
            "--verify-every" => cfg.verify_every = int()?.max(1) as u64,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    cfg.addr = match addr {
        Some(SocketAddr::V4(a)) if a.ip().is_loopback() => a,
        Some(a) => return Err(format!("{a}: only IPv4 loopback addresses (127.0.0.0/8)")),
        None => return Err("--addr is required".to_string()),
    };
    if mode == Mode::Idle {
        cfg.size = 1;
        cfg.warmup = 0.0;
    }
    let positive = [cfg.duration, cfg.timeout, cfg.hold];
    if cfg.connections == 0 || cfg.size == 0 || positive.iter().any(|&x| x <= 0.0) {
        return Err("--connections, --size, --duration, --timeout, --hold must be > 0".into());
    }
    if cfg.warmup < 0.0 {
        return Err("--warmup must be >= 0".into());
    }
    Ok(cfg)
}

// --- system calls -------------------------------------------------------------------------

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Raise the soft limit of open files to the hard limit (the idle mode holds thousands).
fn raise_nofile_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct.
    let ru = unsafe {
        let mut ru: libc::rusage = mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Start a non-blocking connect; the socket becomes writable when it is done.
fn start_connect(addr: &SocketAddrV4) -> io::Result<RawFd> {
    // SAFETY: socket/setsockopt/connect on a descriptor we own, with correctly sized structs.
    unsafe {
        let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let fd = cvt(libc::socket(libc::AF_INET, flags, 0))?;
        let one: libc::c_int = 1;
        let len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        let one_ptr = &one as *const libc::c_int as *const libc::c_void;
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, one_ptr, len);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let sa_len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sa_ptr = &sa as *const libc::sockaddr_in as *const libc::sockaddr;
        if libc::connect(fd, sa_ptr, sa_len) < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINPROGRESS) {
                libc::close(fd);
                return Err(err);
            }
        }
        Ok(fd)
    }
}

fn socket_error(fd: RawFd) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    let err_ptr = &mut err as *mut libc::c_int as *mut libc::c_void;
    // SAFETY: getsockopt into a local int of the right size.
    cvt(unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, err_ptr, &mut len) })?;
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

fn close(fd: RawFd) {
    // SAFETY: fd is a descriptor this program opened and closes once.
    unsafe { libc::close(fd) };
}

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const BROKEN: u32 = (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;
const STDIN_TOKEN: u64 = u64::MAX;

struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev lives across the call.
        cvt(unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) }).map(drop)
    }

    /// Wait up to `timeout`; the ready (token, events) pairs are then in `self.events[..n]`.
    fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
        let cap = self.events.len() as libc::c_int;
        // SAFETY: the buffer holds `cap` events.
        let n = unsafe { libc::epoll_wait(self.fd, self.events.as_mut_ptr(), cap, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(err)
            };
        }
        Ok(n as usize)
    }
}

// --- connections ----------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum State {
    Closed,
    Connecting,
    Busy,
    Idle,
}

struct Conn {
    fd: RawFd,
    state: State,
    writing: bool, // EPOLLOUT is in the interest set
    sent: usize,
    received: usize,
    seq: u64,
    started: Instant, // of this request (echo), of this connection (connect, idle)
    msg: Vec<u8>,
    verify_every: u64,
    verify: bool, // this echo is read and compared; others are discarded in the kernel
}

/// What one event did to a connection.
enum Outcome {
    Nothing,
    Connected,
    Completed,
}

impl Conn {
    fn new(id: usize, size: usize, verify_every: u64) -> Conn {
        let msg = (0..size).map(|i| (i % 251) as u8).collect();
        Conn {
            fd: -1,
            state: State::Closed,
            writing: false,
            sent: 0,
            received: 0,
            seq: (id as u64) << 40,
            started: Instant::now(),
            msg,
            verify_every,
            verify: true,
        }
    }

    fn open(&mut self, ep: &Epoll, token: u64, addr: &SocketAddrV4) -> Result<(), String> {
        self.fd = start_connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
        self.state = State::Connecting;
        self.writing = true;
        self.started = Instant::now();
        ep.ctl(libc::EPOLL_CTL_ADD, self.fd, token, OUT)
            .map_err(|e| format!("epoll_ctl: {e}"))
    }

    fn close(&mut self) {
        if self.state != State::Closed {
            close(self.fd); // also leaves the epoll set
            self.state = State::Closed;
            self.fd = -1;
        }
    }

    /// Send a new message: its first 8 bytes are a sequence number, so a stale echo shows.
    fn begin(&mut self, ep: &Epoll, token: u64) -> Result<(), String> {
        let nth = self.seq & ((1 << 40) - 1); // requests sent on this connection
        self.verify = nth.is_multiple_of(self.verify_every); // the first one is checked
        self.seq += 1;
        let n = self.msg.len().min(8);
        self.msg[..n].copy_from_slice(&self.seq.to_le_bytes()[..n]);
        self.sent = 0;
        self.received = 0;
        self.state = State::Busy;
        self.started = Instant::now();
        self.write_some(ep, token)
    }

    fn write_some(&mut self, ep: &Epoll, token: u64) -> Result<(), String> {
        while self.sent < self.msg.len() {
            let rest = &self.msg[self.sent..];
            // SAFETY: sending from a live slice; MSG_NOSIGNAL: an error, not SIGPIPE.
            let n = unsafe {
                libc::send(
                    self.fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(format!("send: {err}")),
                }
            }
            self.sent += n as usize;
        }
        let want = self.sent < self.msg.len();
        if want != self.writing {
            let events = if want { IN | OUT } else { IN };
            ep.ctl(libc::EPOLL_CTL_MOD, self.fd, token, events)
                .map_err(|e| format!("epoll_ctl: {e}"))?;
            self.writing = want;
        }
        Ok(())
    }

    fn handle(
        &mut self,
        ep: &Epoll,
        token: u64,
        ev: u32,
        buf: &mut [u8],
    ) -> Result<Outcome, String> {
        match self.state {
            State::Closed => Ok(Outcome::Nothing),
            State::Connecting => {
                socket_error(self.fd).map_err(|e| format!("connect: {e}"))?;
                ep.ctl(libc::EPOLL_CTL_MOD, self.fd, token, IN)
                    .map_err(|e| format!("epoll_ctl: {e}"))?;
                self.writing = false;
                Ok(Outcome::Connected)
            }
            State::Busy => {
                if ev & OUT != 0 && self.sent < self.msg.len() {
                    self.write_some(ep, token)?;
                }
                if ev & (IN | BROKEN) != 0 && self.read_some(buf)? {
                    return Ok(Outcome::Completed);
                }
                Ok(Outcome::Nothing)
            }
            State::Idle => {
                // SAFETY: reading into a live buffer.
                let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                match n {
                    0 => Err("the server closed a connection that was waiting".into()),
                    n if n > 0 => Err(format!("{n} unexpected bytes on a waiting connection")),
                    _ => {
                        let err = io::Error::last_os_error();
                        match err.kind() {
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {
                                Ok(Outcome::Nothing)
                            }
                            _ => Err(format!("recv on a waiting connection: {err}")),
                        }
                    }
                }
            }
        }
    }

    /// Read what is there and check it against what was sent (or, for a request that is not
    /// verified, let the kernel discard it: MSG_TRUNC on TCP saves the copy); true when the
    /// echo is complete.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<bool, String> {
        let flags = if self.verify { 0 } else { libc::MSG_TRUNC };
        // SAFETY: reading into a live buffer (with MSG_TRUNC nothing is written to it).
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
                _ => Err(format!("recv: {err}")),
            };
        }
        let n = n as usize;
        let size = self.msg.len();
        if n == 0 {
            return Err(format!(
                "the server closed the connection after echoing {} of {size} bytes",
                self.received
            ));
        }
        let start = self.received;
        if start + n > size {
            return Err(format!(
                "{} bytes echoed for a {size}-byte message",
                start + n
            ));
        }
        if self.verify && buf[..n] != self.msg[start..start + n] {
            let at = (0..n).find(|&i| buf[i] != self.msg[start + i]).unwrap_or(0);
            return Err(format!(
                "echoed byte {} of a {size}-byte message differs from the one sent",
                start + at
            ));
        }
        self.received += n;
        Ok(self.received == size)
    }
}

// --- the run --------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

struct Stats {
    done: u64,
    bytes: u64,
    latencies_ns: Vec<u64>,
    started: Instant,
    cpu_started: f64,
    seconds: f64,
    cpu: f64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            done: 0,
            bytes: 0,
            latencies_ns: Vec::new(),
            started: Instant::now(),
            cpu_started: cpu_seconds(),
            seconds: 0.0,
            cpu: 0.0,
        }
    }

    fn record(&mut self, started: Instant, bytes: usize) {
        self.done += 1;
        self.bytes += 2 * bytes as u64; // sent and echoed
        self.latencies_ns.push(started.elapsed().as_nanos() as u64);
    }

    fn close(&mut self) {
        self.seconds = self.started.elapsed().as_secs_f64();
        self.cpu = cpu_seconds() - self.cpu_started;
    }

    fn latency_json(&mut self) -> String {
        let lat = &mut self.latencies_ns;
        if lat.is_empty() {
            return "null".into();
        }
        lat.sort_unstable();
        let us = |ns: u64| ns as f64 / 1e3;
        let at = |q: f64| us(lat[((q * lat.len() as f64) as usize).min(lat.len() - 1)]);
        let mean = lat.iter().map(|&x| x as f64).sum::<f64>() / lat.len() as f64 / 1e3;
        format!(
            "{{\"mean\": {mean:.1}, \"p50\": {:.1}, \"p90\": {:.1}, \"p99\": {:.1}, \
             \"p99.9\": {:.1}, \"max\": {:.1}}}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            us(*lat.last().unwrap())
        )
    }
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// echo and connect: load until the window closes, then let in-flight requests finish.
fn run_load(cfg: &Config) -> Result<String, String> {
    let mut ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut conns: Vec<Conn> = (0..cfg.connections)
        .map(|i| Conn::new(i, cfg.size, cfg.verify_every))
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.open(&ep, i as u64, &cfg.addr)?;
    }
    let timeout = Duration::from_secs_f64(cfg.timeout);
    let t0 = Instant::now();
    let measure_at = t0 + Duration::from_secs_f64(cfg.warmup);
    let mut phase = if cfg.warmup > 0.0 {
        Phase::Warmup
    } else {
        Phase::Measure
    };
    let mut stats = Stats::new();
    let mut stop_at = Instant::now() + Duration::from_secs_f64(cfg.duration);
    if phase == Phase::Measure {
        say("start");
    }
    let mut progress = Instant::now();
    loop {
        let now = Instant::now();
        if phase == Phase::Warmup && now >= measure_at {
            phase = Phase::Measure;
            stats = Stats::new();
            stop_at = now + Duration::from_secs_f64(cfg.duration);
            say("start");
        }
        let enough = cfg.requests > 0 && stats.done >= cfg.requests;
        if phase == Phase::Measure && (now >= stop_at || enough) {
            phase = Phase::Drain;
            stats.close();
            say("stop");
        }
        let in_flight = |c: &Conn| matches!(c.state, State::Busy | State::Connecting);
        if phase == Phase::Drain && !conns.iter().any(in_flight) {
            break;
        }
        if now.duration_since(progress) > timeout {
            let waiting = conns.iter().filter(|c| c.state == State::Busy).count();
            return Err(format!(
                "stalled: no request completed for {:.1} s ({waiting} of {} connections \
                 waiting for their echo)",
                cfg.timeout,
                conns.len()
            ));
        }
        let wait = match phase {
            Phase::Warmup => measure_at.saturating_duration_since(now),
            Phase::Measure => stop_at.saturating_duration_since(now),
            Phase::Drain => Duration::from_millis(100),
        };
        let n = ep.wait(wait).map_err(|e| format!("epoll_wait: {e}"))?;
        for k in 0..n {
            let (token, ev) = (ep.events[k].u64, ep.events[k].events);
            let i = token as usize;
            let c = &mut conns[i];
            match c.handle(&ep, token, ev, &mut buf)? {
                Outcome::Nothing => {}
                Outcome::Connected => {
                    if cfg.mode == Mode::Connect {
                        let opened = c.started; // a connection's latency counts from connect()
                        c.begin(&ep, token)?;
                        c.started = opened;
                    } else if phase == Phase::Drain {
                        c.state = State::Idle;
                    } else {
                        c.begin(&ep, token)?;
                    }
                }
                Outcome::Completed => {
                    progress = Instant::now();
                    if phase == Phase::Measure {
                        stats.record(c.started, cfg.size);
                    }
                    if cfg.mode == Mode::Connect {
                        c.close();
                        if phase != Phase::Drain {
                            c.open(&ep, token, &cfg.addr)?;
                        }
                    } else if phase == Phase::Drain {
                        c.state = State::Idle;
                    } else {
                        c.begin(&ep, token)?;
                    }
                }
            }
        }
    }
    for c in &mut conns {
        c.close();
    }
    let mode = if cfg.mode == Mode::Echo {
        "echo"
    } else {
        "connect"
    };
    let latency = stats.latency_json();
    let s = &stats;
    Ok(format!(
        "{{\"mode\": \"{mode}\", \"connections\": {}, \"size\": {}, \"requests\": {}, \
         \"bytes\": {}, \"seconds\": {:.6}, \"per_second\": {:.1}, \"loadgen_cpu_seconds\": \
         {:.3}, \"latency_us\": {}}}",
        cfg.connections,
        cfg.size,
        s.done,
        s.bytes,
        s.seconds,
        s.done as f64 / s.seconds,
        s.cpu,
        latency
    ))
}

/// idle: open `count` connections (a 1-byte echo on each), then hold them.
fn run_idle(cfg: &Config) -> Result<String, String> {
    let mut ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut conns: Vec<Conn> = Vec::with_capacity(cfg.count);
    let timeout = Duration::from_secs_f64(cfg.timeout);
    let t0 = Instant::now();
    let (mut opening, mut held) = (0usize, 0usize);
    let mut progress = Instant::now();
    while held < cfg.count {
        while opening < cfg.connections && conns.len() < cfg.count {
            let mut c = Conn::new(conns.len(), 1, 1);
            c.open(&ep, conns.len() as u64, &cfg.addr)
                .map_err(|e| format!("{e} (after {} connections)", conns.len()))?;
            conns.push(c);
            opening += 1;
        }
        if progress.elapsed() > timeout {
            return Err(format!(
                "stalled: {held} connections open, {opening} more not answered for {:.1} s",
                cfg.timeout
            ));
        }
        let n = ep
            .wait(Duration::from_millis(100))
            .map_err(|e| format!("epoll_wait: {e}"))?;
        for k in 0..n {
            let (token, ev) = (ep.events[k].u64, ep.events[k].events);
            let c = &mut conns[token as usize];
            match c.handle(&ep, token, ev, &mut buf)? {
                Outcome::Nothing => {}
                Outcome::Connected => c.begin(&ep, token)?,
                Outcome::Completed => {
                    c.state = State::Idle;
                    opening -= 1;
                    held += 1;
                    progress = Instant::now();
                }
            }
        }
    }
    let open_seconds = t0.elapsed().as_secs_f64();
    say(&format!("ready {held}"));

    // Hold until stdin has a line or closes, or --hold runs out; a connection closing meanwhile
    // is an error.
    let watching_stdin = ep.ctl(libc::EPOLL_CTL_ADD, 0, STDIN_TOKEN, IN).is_ok();
    let release_at = Instant::now() + Duration::from_secs_f64(cfg.hold);
    let mut released_by = "timeout";
    'hold: while Instant::now() < release_at {
        let n = ep
            .wait(release_at.saturating_duration_since(Instant::now()))
            .map_err(|e| format!("epoll_wait: {e}"))?;
        for k in 0..n {
            let (token, ev) = (ep.events[k].u64, ep.events[k].events);
            if token == STDIN_TOKEN {
                released_by = "stdin";
                break 'hold;
            }
            conns[token as usize].handle(&ep, token, ev, &mut buf)?;
        }
    }
    for c in &mut conns {
        c.close();
    }
    Ok(format!(
        "{{\"mode\": \"idle\", \"connections\": {held}, \"open_seconds\": {open_seconds:.3}, \
         \"released_by\": \"{released_by}\", \"watched_stdin\": {watching_stdin}}}"
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let cfg = match parse_args(&args) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    raise_nofile_limit();
    let result = match cfg.mode {
        Mode::Echo | Mode::Connect => run_load(&cfg),
        Mode::Idle => run_idle(&cfg),
    };
    match result {
        Ok(json) => {
            say(&json);
            ExitCode::SUCCESS
        }
        Err(msg) => {
            say(&format!("{{\"error\": {}}}", json_string(&msg)));
            ExitCode::FAILURE
        }
    }
}
