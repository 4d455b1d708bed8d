//! Socket addresses in their system form: `get_extra_info`'s `sockname` and `peername` are
//! queried when the transport is made and turned into Python's tuples only when asked for.

use std::io;
use std::os::fd::RawFd;

use pyo3::prelude::*;

use crate::event_loop::sockaddr_to_py;

/// An AF_INET/AF_INET6 address in its system form, turned into Python's tuple when asked for.
#[derive(Clone, Copy)]
pub(crate) enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    /// The address in `storage` (`len` bytes), if it is AF_INET or AF_INET6.
    pub(crate) fn from_storage(storage: &libc::sockaddr_storage) -> Option<Self> {
        // SAFETY: the family says which sockaddr type the storage holds; both are smaller.
        unsafe {
            match i32::from(storage.ss_family) {
                libc::AF_INET => Some(RawAddr::V4(
                    *(storage as *const _ as *const libc::sockaddr_in),
                )),
                libc::AF_INET6 => Some(RawAddr::V6(
                    *(storage as *const _ as *const libc::sockaddr_in6),
                )),
                _ => None,
            }
        }
    }

    /// The wildcard address (0.0.0.0 or ::), whatever the port.
    pub(crate) fn is_wildcard(&self) -> bool {
        match self {
            RawAddr::V4(a) => a.sin_addr.s_addr == 0,
            RawAddr::V6(a) => a.sin6_addr.s6_addr == [0; 16],
        }
    }

    /// `getsockname` or `getpeername` of `fd`: Ok(None) for a family kept as Python objects,
    /// Err for a failing call.
    pub(crate) fn query(fd: RawFd, peer: bool) -> io::Result<(i32, Option<Self>)> {
        // SAFETY: an all-zero sockaddr_storage is valid; the call writes at most `len` bytes.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let p = (&mut storage as *mut libc::sockaddr_storage).cast();
        let rc = unsafe {
            if peer {
                libc::getpeername(fd, p, &mut len)
            } else {
                libc::getsockname(fd, p, &mut len)
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((i32::from(storage.ss_family), Self::from_storage(&storage)))
    }

    pub(super) fn to_py<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: an all-zero sockaddr_storage is valid; the copied address fits in it.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        match self {
            RawAddr::V4(a) => unsafe { *(&mut storage as *mut _ as *mut libc::sockaddr_in) = a },
            RawAddr::V6(a) => unsafe { *(&mut storage as *mut _ as *mut libc::sockaddr_in6) = a },
        }
        sockaddr_to_py(py, &storage)
    }
}

/// An address `get_extra_info` reports: not asked yet, unavailable (None), or in system form.
#[derive(Clone, Copy)]
pub(super) enum Addr {
    Unset,
    Failed,
    Raw(RawAddr),
}
