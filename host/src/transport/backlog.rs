//! How far a UDP socket's reader is behind: the bytes waiting in its
//! receive buffer against the buffer's size (`SO_MEMINFO`, Linux). When a
//! receive loop finds its socket filling up, it answers the new requests
//! it reads 503 at once (`admission.rs`) instead of handing them on, so
//! what is admitted stays within what the host can read, and the buffer
//! never overflows onto the calls in progress. Elsewhere nothing is known
//! and nothing is shed here (the queues' bounds still apply).

use tokio::net::UdpSocket;

/// Whether more than `percent` % of `socket`'s receive buffer is taken.
#[cfg(target_os = "linux")]
pub(super) fn filled_over(socket: &UdpSocket, percent: u32) -> bool {
    fill(socket).is_some_and(|(queued, size)| {
        u64::from(queued) * 100 > u64::from(size) * u64::from(percent)
    })
}

#[cfg(not(target_os = "linux"))]
pub(super) fn filled_over(_socket: &UdpSocket, _percent: u32) -> bool {
    false
}

/// (bytes queued, buffer size), both as the kernel accounts them.
#[cfg(target_os = "linux")]
fn fill(socket: &UdpSocket) -> Option<(u32, u32)> {
    use std::os::fd::AsRawFd;
    // SK_MEMINFO_VARS in <linux/sock_diag.h>: rmem_alloc, rcvbuf, ...
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: SO_MEMINFO writes at most `len` bytes into `info`, which is
    // ours for the call; the descriptor is the socket's own.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (r == 0 && info[1] > 0).then_some((info[0], info[1]))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_nobody_reads_fills_up() {
        let std = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket2::SockRef::from(&std)
            .set_recv_buffer_size(64 * 1024)
            .expect("SO_RCVBUF");
        std.set_nonblocking(true).expect("nonblocking");
        let socket = UdpSocket::from_std(std).expect("tokio socket");
        let to = socket.local_addr().expect("address");
        assert!(!filled_over(&socket, 25), "empty");
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind peer");
        for _ in 0..200 {
            let _ = peer.send_to(&[7u8; 1000], to);
        }
        assert!(filled_over(&socket, 25), "{:?}", fill(&socket));
        assert!(!filled_over(&socket, 100));
    }
}
