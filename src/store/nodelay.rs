//! TCP_NODELAY on the PostgreSQL connections, which sqlx 0.9.0 no longer sets (sqlx#4335; the
//! fix, sqlx#4336, is merged but not released). Remove this module once sqlx sets it again.
//!
//! Why it matters: sqlx sends a statement in one flush, but over TLS a message larger than a
//! TLS record (16 KB) leaves as two writes. With Nagle's algorithm the second waits for the
//! server to acknowledge the first, and the server, which has not got the whole message yet,
//! acknowledges only when its delayed-ACK timer fires (40 ms on Linux). A batch of signups is
//! such a message under load: measured on 2 cores, 64 connections, PostgreSQL over TLS on
//! loopback: 4,900 req/s with p90 49 ms and p99 57 ms, against 7,100 req/s and p99 18 ms with
//! TLS off or the delayed ACK disabled on the route.
//!
//! sqlx does not hand out its socket, so each new connection finds its own: the process's
//! TCP sockets whose peer is the database's port. (The pool is the only user of that port in
//! this process; a socket already set is set again, which changes nothing.)

use sea_orm::sqlx::PgConnection;
use sea_orm::sqlx::pool::PoolConnectionMetadata;

/// The port of a `postgres://` URL (5432 when it names none; `None` for a Unix socket).
pub(super) fn port_of(url: &str) -> Option<u16> {
    let url = url::Url::parse(url).ok()?;
    let via_socket = url.query_pairs().any(|(k, v)| k == "host" && v.starts_with('/'));
    if via_socket || url.host_str().is_none_or(|h| h.is_empty() || h.starts_with('%')) {
        return None;
    }
    Some(url.port().unwrap_or(5432))
}

/// sqlx's `after_connect` hook: sets TCP_NODELAY on the sockets to `port`.
pub(super) fn after_connect(
    port: u16,
) -> impl for<'c> Fn(
    &'c mut PgConnection,
    PoolConnectionMetadata,
) -> futures::future::BoxFuture<'c, Result<(), sea_orm::sqlx::Error>>
+ Send
+ Sync
+ 'static {
    move |_conn, _meta| {
        Box::pin(async move {
            let set = set_on_sockets_to(port);
            tracing::debug!(port, sockets = set, "TCP_NODELAY set on database connections");
            Ok(())
        })
    }
}

/// Sets TCP_NODELAY on every TCP socket of this process connected to `port`; returns how many.
#[cfg(target_os = "linux")]
pub fn set_on_sockets_to(port: u16) -> usize {
    sockets_to(port, |socket| socket.set_tcp_nodelay(true).is_ok())
}

#[cfg(not(target_os = "linux"))]
pub fn set_on_sockets_to(_port: u16) -> usize {
    0
}

/// Whether the TCP socket of this process bound to `local_port` has TCP_NODELAY (`None` when
/// there is no such socket). A database connection's local port is `inet_client_port()`.
#[cfg(target_os = "linux")]
pub fn nodelay_of_local_port(local_port: u16) -> Option<bool> {
    let mut found = None;
    for_each_tcp_socket(|socket, local, _peer| {
        if local.port() == local_port {
            found = socket.tcp_nodelay().ok();
        }
    });
    found
}

#[cfg(not(target_os = "linux"))]
pub fn nodelay_of_local_port(_local_port: u16) -> Option<bool> {
    None
}

/// Calls `f` on each open TCP socket whose peer port is `port`; counts the `true`s.
#[cfg(target_os = "linux")]
fn sockets_to(port: u16, mut f: impl FnMut(&socket2::SockRef<'_>) -> bool) -> usize {
    let mut count = 0;
    for_each_tcp_socket(|socket, _local, peer| {
        if peer.port() == port && f(socket) {
            count += 1;
        }
    });
    count
}

/// Calls `f` with each connected TCP socket of this process and its local and peer address.
#[cfg(target_os = "linux")]
fn for_each_tcp_socket(mut f: impl FnMut(&socket2::SockRef<'_>, std::net::SocketAddr, std::net::SocketAddr)) {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
            continue;
        };
        // Sockets only (the link reads `socket:[inode]`): no system call on anything else.
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_encoded_bytes().starts_with(b"socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor was open a moment ago and is only borrowed for the socket
        // calls below (getsockname, getpeername, getsockopt/setsockopt). Should another thread
        // close it meanwhile, they fail with EBADF; should the number be reused by then, it is
        // looked at as whatever it now is. None of them reads or writes memory of ours.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let addr = |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        if let (Some(local), Some(peer)) = (addr(socket.local_addr()), addr(socket.peer_addr())) {
            f(&socket, local, peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_comes_from_the_url() {
        assert_eq!(port_of("postgres://postgres@127.0.0.1:5433/test"), Some(5433));
        assert_eq!(port_of("postgres://postgres@db.internal/test"), Some(5432));
        assert_eq!(
            port_of("postgres://postgres@localhost/test?host=/var/run/postgresql"),
            None
        );
        assert_eq!(port_of("not a url"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sockets_to_a_port_get_nodelay_and_others_are_left_alone() {
        use std::net::{TcpListener, TcpStream};
        let (a, b) = (
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
        let to_a = TcpStream::connect(("127.0.0.1", pa)).unwrap();
        let to_b = TcpStream::connect(("127.0.0.1", pb)).unwrap();
        assert!(
            !to_a.nodelay().unwrap() && !to_b.nodelay().unwrap(),
            "Nagle is on by default"
        );
        assert_eq!(set_on_sockets_to(pa), 1);
        assert!(to_a.nodelay().unwrap());
        assert!(
            !to_b.nodelay().unwrap(),
            "a socket to another port keeps its setting"
        );
        let local = |s: &TcpStream| s.local_addr().unwrap().port();
        assert_eq!(nodelay_of_local_port(local(&to_a)), Some(true));
        assert_eq!(nodelay_of_local_port(local(&to_b)), Some(false));
    }
}
