//! UDP datagrams in batches: on Linux one `recvmmsg` system call reads
//! every datagram already waiting (up to a batch), in arrival order, and
//! one `sendmmsg` sends the answers a receive loop makes itself (the edge's
//! 503s under overload); elsewhere one system call per datagram. Under
//! load, when one receive loop serves a busy peer alone (see `udp.rs`: one
//! peer, one loop), the system call per datagram is what the loop would
//! spend most on.

use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Room for the largest UDP payload.
const DATAGRAM: usize = 65536;

pub(super) struct BatchReader {
    bufs: Vec<Box<[u8]>>,
    /// Length and source of each datagram of the last read.
    got: Vec<(usize, SocketAddr)>,
}

impl BatchReader {
    /// A reader of up to `batch` datagrams per call (at least one).
    pub fn new(batch: usize) -> BatchReader {
        let batch = if cfg!(target_os = "linux") {
            batch.max(1)
        } else {
            1
        };
        BatchReader {
            bufs: (0..batch)
                .map(|_| vec![0u8; DATAGRAM].into_boxed_slice())
                .collect(),
            got: Vec::with_capacity(batch),
        }
    }

    /// Waits for at least one datagram and reads what is waiting, up to a
    /// batch. Then [`BatchReader::datagrams`] yields them in arrival order.
    pub async fn read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.got.clear();
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = socket.as_raw_fd();
            let (bufs, got) = (&mut self.bufs, &mut self.got);
            socket
                .async_io(tokio::io::Interest::READABLE, || recv_batch(fd, bufs, got))
                .await?;
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (n, from) = socket.recv_from(&mut self.bufs[0]).await?;
            self.got.push((n, from));
        }
        Ok(self.got.len())
    }

    /// Whether the last read took a whole batch (more may be waiting).
    pub fn was_full(&self) -> bool {
        self.got.len() == self.bufs.len()
    }

    /// The datagrams of the last read, in arrival order.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.got
            .iter()
            .zip(&self.bufs)
            .map(|(&(n, from), buf)| (&buf[..n.min(buf.len())], from))
    }
}

/// Sends `datagrams` without waiting, in one system call where the
/// platform has one; what the socket cannot take now is dropped (these are
/// answers to retransmitted requests: a retransmission meets them again).
/// Returns how many were sent.
pub(super) fn send_batch(socket: &UdpSocket, datagrams: &[(bytes::Bytes, SocketAddr)]) -> usize {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        // Straight to the kernel (MSG_DONTWAIT), not through tokio's
        // readiness: this socket is read here, never awaited for writing,
        // so tokio may not know yet that it is writable.
        let mut sent = 0;
        while sent < datagrams.len() {
            match send_mmsg(fd, &datagrams[sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        sent
    }
    #[cfg(not(target_os = "linux"))]
    {
        datagrams
            .iter()
            .filter(|(data, to)| socket.try_send_to(data, *to).is_ok())
            .count()
    }
}

/// One `sendmmsg(2)` without blocking: how many of `datagrams` left.
#[cfg(target_os = "linux")]
fn send_mmsg(
    fd: std::os::fd::RawFd,
    datagrams: &[(bytes::Bytes, SocketAddr)],
) -> io::Result<usize> {
    use std::mem::zeroed;
    let addrs: Vec<socket2::SockAddr> = datagrams.iter().map(|(_, to)| (*to).into()).collect();
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(data, _)| libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = addrs
        .iter()
        .zip(iovs.iter_mut())
        .map(|(addr, iov)| {
            // SAFETY: all-zero is a valid value for this plain C struct;
            // every pointer set below outlives the call.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr().cast::<libc::c_void>().cast_mut();
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: `hdrs` holds one header per datagram whose name and iovec
    // point into `addrs`, `iovs` and the datagrams, alive for the call; the
    // kernel only reads the buffers.
    let r = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// One `recvmmsg(2)` without blocking: `WouldBlock` when nothing waits.
#[cfg(target_os = "linux")]
fn recv_batch(
    fd: std::os::fd::RawFd,
    bufs: &mut [Box<[u8]>],
    got: &mut Vec<(usize, SocketAddr)>,
) -> io::Result<()> {
    use std::mem::{size_of, zeroed};
    let n = bufs.len();
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut addrs: Vec<libc::sockaddr_storage> = (0..n).map(|_| unsafe { zeroed() }).collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = (0..n)
        .map(|i| {
            // SAFETY: as above; every pointer set below outlives the call.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: `hdrs` holds `n` headers whose name and iovec pointers point
    // into `addrs`, `iovs` and `bufs`, all alive and unaliased for the call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    for (h, storage) in hdrs.iter().zip(&addrs).take(r as usize) {
        if let Some(from) = socket_addr(storage) {
            got.push((h.msg_len as usize, from));
        }
    }
    Ok(())
}

/// The IPv4 or IPv6 address the kernel wrote into `storage`.
#[cfg(target_os = "linux")]
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_read_in_one_call_in_arrival_order() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = socket.local_addr().expect("address");
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        for i in 0..20u8 {
            peer.send_to(&[i; 3], to).expect("send");
        }
        let mut reader = BatchReader::new(8);
        let mut seen = Vec::new();
        let first = reader.read(&socket).await.expect("read");
        assert_eq!(first, 8, "every datagram waiting, up to the batch");
        while seen.len() < 20 {
            if !seen.is_empty() {
                reader.read(&socket).await.expect("read");
            }
            for (data, from) in reader.datagrams() {
                assert_eq!(from, peer.local_addr().expect("address"));
                assert_eq!(data.len(), 3);
                seen.push(data[0]);
            }
        }
        assert_eq!(seen, (0..20).collect::<Vec<u8>>());
    }

    #[tokio::test]
    async fn a_batch_is_sent_in_order_to_each_address() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        let (to_a, to_b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let batch: Vec<(bytes::Bytes, SocketAddr)> = (0..10u8)
            .map(|i| {
                (
                    bytes::Bytes::from(vec![i; 5]),
                    if i % 2 == 0 { to_a } else { to_b },
                )
            })
            .collect();
        assert_eq!(send_batch(&socket, &batch), 10);
        let mut buf = [0u8; 16];
        for (peer, first) in [(&a, 0u8), (&b, 1u8)] {
            peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            for i in 0..5u8 {
                let (n, from) = peer.recv_from(&mut buf).expect("a datagram");
                assert_eq!(from, socket.local_addr().expect("address"));
                assert_eq!(&buf[..n], &[first + 2 * i; 5]);
            }
        }
    }
}
