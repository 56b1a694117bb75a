//! Datagrams the kernel dropped because a UDP socket's receive buffer was
//! full. Linux counts them per socket in `/proc/net/udp` and `udp6` (the
//! last column), found by the socket's inode; the host exports them as
//! `escalator_udp_receive_drops_total` so an operator sees bursts being
//! lost without reading `/proc`. The sockets watched change: a flooding
//! peer's socket of its own (`isolation.rs`) is added while it lives, and
//! what it dropped stays counted once it is closed.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

const TABLES: [&str; 2] = ["/proc/net/udp", "/proc/net/udp6"];
const EVERY: Duration = Duration::from_secs(5);

/// The inode that names `socket` in the kernel's socket tables.
pub(super) fn socket_inode(socket: &impl AsRawFd) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` for a valid descriptor and reports
    // failure otherwise; the value is read only after success.
    let st = unsafe {
        if libc::fstat(socket.as_raw_fd(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    Some(st.st_ino)
}

/// The drop count of the socket with `inode` in one table's text.
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        if fields.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        fields.get(12)?.parse().ok()
    })
}

/// The kernel's UDP socket tables as they are now.
fn read_tables() -> Vec<String> {
    TABLES
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect()
}

/// Datagrams dropped so far by the socket with `inode` (None: not found).
fn receive_drops(tables: &[String], inode: u64) -> Option<u64> {
    tables.iter().find_map(|table| drops_in(table, inode))
}

/// The sockets whose drops are published: those open now (listen address,
/// inode) and, per listen address, what the closed ones had dropped.
#[derive(Debug, Default)]
pub(super) struct Watched {
    live: Vec<(SocketAddr, u64)>,
    retired: std::collections::BTreeMap<SocketAddr, u64>,
}

impl Watched {
    pub fn add(&mut self, local: SocketAddr, inode: u64) {
        self.live.push((local, inode));
    }

    /// The socket with `inode` is closing: what it dropped is kept.
    pub fn retire(&mut self, inode: u64) {
        let Some(at) = self.live.iter().position(|&(_, i)| i == inode) else {
            return;
        };
        let (local, _) = self.live.swap_remove(at);
        let dropped = receive_drops(&read_tables(), inode).unwrap_or(0);
        *self.retired.entry(local).or_insert(0) += dropped;
    }

    /// Drops per listen address, open and closed sockets together.
    fn totals(&self, tables: &[String]) -> std::collections::BTreeMap<SocketAddr, u64> {
        let mut sums = drops_per_address(tables, &self.live);
        for (local, dropped) in &self.retired {
            *sums.entry(*local).or_insert(0) += dropped;
        }
        sums
    }
}

/// Publishes, every few seconds, the drops of each listen address: the sum
/// over the sockets that serve it (a `SO_REUSEPORT` group, see `udp`, and
/// the sockets of isolated peers).
pub(super) async fn export(
    watched: std::sync::Arc<std::sync::Mutex<Watched>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let tables = read_tables();
        let totals = match watched.lock() {
            Ok(w) => w.totals(&tables),
            Err(_) => return,
        };
        for (local, drops) in totals {
            metrics::counter!(crate::metrics::UDP_RECEIVE_DROPS, "local" => local.to_string())
                .absolute(drops);
        }
    }
}

/// Drops summed per listen address over its sockets found in `tables`.
fn drops_per_address(
    tables: &[String],
    sockets: &[(SocketAddr, u64)],
) -> std::collections::BTreeMap<SocketAddr, u64> {
    let mut sums = std::collections::BTreeMap::new();
    for (local, inode) in sockets {
        if let Some(drops) = receive_drops(tables, *inode) {
            *sums.entry(*local).or_insert(0) += drops;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
     9087: 0200007F:4E2E 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 388531 2 0000000015075209 0\n\
     9088: 0200007F:4E2F 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 388532 2 0000000015075300 158\n";

    #[test]
    fn reads_the_drops_of_the_socket_named_by_its_inode() {
        assert_eq!(drops_in(TABLE, 388531), Some(0));
        assert_eq!(drops_in(TABLE, 388532), Some(158));
        assert_eq!(drops_in(TABLE, 1), None);
        assert_eq!(drops_in("header only\n", 388531), None);
    }

    #[test]
    fn drops_are_summed_over_the_sockets_of_one_address() {
        let a: SocketAddr = "127.0.0.2:20014".parse().expect("literal");
        let b: SocketAddr = "127.0.0.2:20015".parse().expect("literal");
        let tables = [TABLE.to_string()];
        let sums = drops_per_address(&tables, &[(a, 388531), (a, 388532), (b, 388531), (b, 7)]);
        assert_eq!(sums.get(&a), Some(&158));
        assert_eq!(sums.get(&b), Some(&0));
    }

    #[test]
    fn a_full_receive_buffer_shows_as_drops() {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("socket");
        sock.set_recv_buffer_size(4096).expect("small buffer");
        sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("literal").into())
            .expect("bind");
        let receiver: std::net::UdpSocket = sock.into();
        let to = receiver.local_addr().expect("address");
        let inode = socket_inode(&receiver).expect("inode");
        assert_eq!(receive_drops(&read_tables(), inode), Some(0));
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        for _ in 0..200 {
            sender.send_to(&[0u8; 1000], to).expect("send");
        }
        let dropped = receive_drops(&read_tables(), inode).unwrap_or(0);
        assert!(dropped > 0, "nobody read: the kernel dropped");
        // Watched while open, and still counted once closed.
        let mut watched = Watched::default();
        watched.add(to, inode);
        assert_eq!(watched.totals(&read_tables()).get(&to), Some(&dropped));
        watched.retire(inode);
        drop(receiver);
        assert_eq!(receive_drops(&read_tables(), inode), None, "closed");
        assert_eq!(watched.totals(&read_tables()).get(&to), Some(&dropped));
        watched.retire(inode); // twice: no change
        assert_eq!(watched.totals(&read_tables()).get(&to), Some(&dropped));
    }
}
