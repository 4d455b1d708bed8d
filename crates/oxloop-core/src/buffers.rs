//! The write queue of a stream transport: chunks waiting to be sent, sent with one `writev`.
//!
//! Guarantees:
//! - Bytes leave in the order they were queued; a partial write resumes mid-chunk.
//! - One system call per [`WriteQueue::write_to`]: `write` for one chunk, else `writev` of at
//!   most `IOV_MAX` chunks.
//! - Chunks that were fully sent are handed back to the caller (to be released where the caller
//!   chooses, e.g. outside a lock), never dropped while a borrow of them is live.
//!
//! The queue is generic over its chunk type and holds no Python objects of its own.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// The most iovecs one `writev` takes on Linux (`IOV_MAX`).
pub const IOV_MAX: usize = 1024;

/// Up to this many chunks, `writev`'s iovecs are on the stack; more take a vector.
const STACK_IOVS: usize = 64;

/// Something whose bytes can be sent; the bytes must not move while the chunk is queued.
pub trait Chunk {
    fn as_bytes(&self) -> &[u8];
}

impl Chunk for Vec<u8> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

/// Chunks waiting to be written, and how much of the first one is already gone.
pub struct WriteQueue<C> {
    chunks: VecDeque<C>,
    /// Bytes of the first chunk already written.
    head_sent: usize,
    /// Bytes still to write, over all chunks.
    len: usize,
}

impl<C: Chunk> Default for WriteQueue<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Chunk> WriteQueue<C> {
    pub fn new() -> Self {
        WriteQueue {
            chunks: VecDeque::new(),
            head_sent: 0,
            len: 0,
        }
    }

    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Chunks still (partly) to write.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Queue a chunk; an empty one is handed back at once.
    pub fn push(&mut self, chunk: C) -> Option<C> {
        let n = chunk.as_bytes().len();
        if n == 0 {
            return Some(chunk);
        }
        self.len += n;
        self.chunks.push_back(chunk);
        None
    }

    /// Forget `n` written bytes; the chunks that are now fully written are moved to `done` (a
    /// caller's reused vector: no allocation per write).
    pub fn consume(&mut self, mut n: usize, done: &mut Vec<C>) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.as_bytes().len() - self.head_sent;
            if n >= left {
                n -= left;
                self.head_sent = 0;
                if let Some(c) = self.chunks.pop_front() {
                    done.push(c);
                }
            } else {
                self.head_sent += n;
                n = 0;
            }
        }
    }

    /// Remove everything; returns the chunks.
    pub fn clear(&mut self) -> Vec<C> {
        self.head_sent = 0;
        self.len = 0;
        self.chunks.drain(..).collect()
    }

    /// Write as much as the descriptor takes with one system call (see the module). Returns the
    /// bytes written and
    /// moves the chunks now fully written to `done`; `WouldBlock` means nothing could be written
    /// now.
    pub fn write_to(&mut self, fd: RawFd, done: &mut Vec<C>) -> io::Result<usize> {
        let n = if self.chunks.len() == 1 {
            // One chunk: write(2), without building (or allocating) the iovec array.
            let b = &self.chunks[0].as_bytes()[self.head_sent..];
            // SAFETY: the buffer belongs to a chunk of this queue, unchanged during the call.
            retry(|| unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) })?
        } else {
            self.writev(fd)?
        };
        self.consume(n, done);
        Ok(n)
    }

    fn writev(&self, fd: RawFd) -> io::Result<usize> {
        let count = self.chunks.len().min(IOV_MAX);
        if count == 0 {
            return Ok(0);
        }
        // Not zeroed first: only the first `count` are written, and only they are passed on.
        let mut on_stack = [MaybeUninit::<libc::iovec>::uninit(); STACK_IOVS];
        let mut on_heap = Vec::new();
        let iov = if count <= STACK_IOVS {
            &mut on_stack[..count]
        } else {
            on_heap.resize(count, MaybeUninit::uninit());
            &mut on_heap[..]
        };
        for (i, (c, v)) in self.chunks.iter().zip(iov.iter_mut()).enumerate() {
            let b = c.as_bytes();
            let skip = if i == 0 { self.head_sent } else { 0 };
            v.write(libc::iovec {
                iov_base: b[skip..].as_ptr() as *mut libc::c_void,
                iov_len: b.len() - skip,
            });
        }
        let iov = iov.as_ptr().cast::<libc::iovec>();
        // SAFETY: the first `count` iovecs were written above (the zip covers all of them: the
        // queue has at least `count` chunks); each points into a chunk owned by this queue,
        // which is not changed until writev returns.
        retry(|| unsafe { libc::writev(fd, iov, count as libc::c_int) })
    }
}

/// A write system call, retried when a signal interrupted it.
fn retry(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn counts_and_consumes_mid_chunk() {
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        assert!(q.push(Vec::new()).is_some());
        assert!(q.push(b"hello".to_vec()).is_none());
        assert!(q.push(b"world".to_vec()).is_none());
        assert_eq!((q.len(), q.chunk_count()), (10, 2));
        let mut done = Vec::new();
        q.consume(3, &mut done);
        assert!(done.is_empty());
        assert_eq!(q.len(), 7);
        q.consume(4, &mut done);
        assert_eq!(done, vec![b"hello".to_vec()]);
        assert_eq!((q.len(), q.chunk_count()), (3, 1));
        assert_eq!(q.clear(), vec![b"world".to_vec()]);
        assert!(q.is_empty());
    }

    #[test]
    fn writev_sends_everything_in_order_in_one_call() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        for part in [&b"GET / "[..], b"HTTP/1.1\r\n", b"\r\n"] {
            q.push(part.to_vec());
        }
        let mut done = Vec::new();
        q.consume(2, &mut done);
        assert!(done.is_empty());
        let n = q.write_to(a.as_raw_fd(), &mut done).unwrap();
        assert_eq!(n, 16);
        assert_eq!(done.len(), 3);
        assert!(q.is_empty());
        let mut got = [0u8; 16];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"T / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn more_chunks_than_fit_on_the_stack_and_than_iov_max() {
        for count in [STACK_IOVS, STACK_IOVS + 1, IOV_MAX + 5] {
            let (a, mut b) = UnixStream::pair().unwrap();
            let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
            for i in 0..count {
                q.push(vec![(i % 251) as u8; 3]);
            }
            let mut done = Vec::new();
            let n = q.write_to(a.as_raw_fd(), &mut done).unwrap();
            let sent = count.min(IOV_MAX);
            assert_eq!(
                (n, done.len(), q.chunk_count()),
                (3 * sent, sent, count - sent)
            );
            let mut got = vec![0u8; n];
            b.read_exact(&mut got).unwrap();
            let want: Vec<u8> = (0..sent).flat_map(|i| [(i % 251) as u8; 3]).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_full_socket_reports_would_block_and_keeps_the_rest() {
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        q.push(vec![7u8; 8 << 20]);
        let mut done = Vec::new();
        let n = q.write_to(a.as_raw_fd(), &mut done).unwrap();
        assert!(n > 0 && n < 8 << 20);
        assert!(done.is_empty());
        assert_eq!(q.len(), (8 << 20) - n);
        let err = q.write_to(a.as_raw_fd(), &mut done).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
