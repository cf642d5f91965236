//! Who may use a tunnel's local ports: by default only processes of the tunnel's own user.
//!
//! The listeners are on 127.0.0.1, which every user of the machine can reach. On Linux the
//! owner of a local client socket is public in `/proc/net/tcp` (and `tcp6`): the row whose
//! local address is the accepted connection's peer address and whose remote address is our
//! listener is the client's own socket, and its `uid` column is the user that opened it.

/// Which local processes may use a tunnel's forwards; set with
/// [`TunnelBuilder::local_clients`](crate::TunnelBuilder::local_clients).
///
/// Default: [`LocalClients::SameUser`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalClients {
    /// Only processes running as this process's effective user. A connection from another
    /// user, or whose owner cannot be found, is closed at once: no byte is sent and no channel
    /// is opened; it counts in [`TunnelStats::connections_denied`](crate::TunnelStats).
    ///
    /// Linux only (it reads `/proc/net/tcp` and `/proc/net/tcp6`). On other systems the owner
    /// cannot be checked, every connection is admitted and the tunnel logs one warning.
    #[default]
    SameUser,
    /// Any process on this machine, whatever its user (the ports are on 127.0.0.1 only).
    AnyUser,
}

/// Whether the connection accepted from `peer` on our `local` address may be served.
/// The socket tables are read once per batch of accepts, and again only for a connection
/// missing from the last read (see [`Owners`]).
#[cfg(target_os = "linux")]
pub(super) fn admit(
    owners: &mut Owners,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
) -> bool {
    let own = rustix::process::geteuid().as_raw();
    match owners.uid_of(peer, local) {
        Ok(Some(uid)) if uid == own => true,
        Ok(Some(uid)) => {
            tracing::warn!(%peer, uid, own, "refused a local connection from another user");
            false
        }
        Ok(None) => {
            tracing::warn!(%peer, "refused a local connection whose owner was not found");
            false
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "refused a local connection: cannot read its owner");
            false
        }
    }
}

/// Without `/proc/net/tcp` the owner is unknown: admits, and says so once per process.
#[cfg(not(target_os = "linux"))]
pub(super) fn admit(_: &mut Owners, _: std::net::SocketAddr, _: std::net::SocketAddr) -> bool {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "this system cannot tell which user opened a local connection: \
             the tunnel serves every local user"
        );
    });
    true
}

/// The socket tables, read when first needed and again once when a connection is missing
/// (it may have connected after the last read).
#[derive(Default)]
pub(super) struct Owners {
    #[cfg(target_os = "linux")]
    tables: Option<String>,
}

#[cfg(target_os = "linux")]
impl Owners {
    fn uid_of(
        &mut self,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> std::io::Result<Option<u32>> {
        if let Some(tables) = &self.tables
            && let Some(uid) = linux::owner(tables, peer, local)
        {
            return Ok(Some(uid));
        }
        // Both tables: a client's dual-stack socket shows up in tcp6 with a v4-mapped address.
        let mut tables = std::fs::read_to_string("/proc/net/tcp")?;
        match std::fs::read_to_string("/proc/net/tcp6") {
            Ok(v6) => tables.push_str(&v6),
            // A kernel without IPv6 has no tcp6.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let uid = linux::owner(&tables, peer, local);
        self.tables = Some(tables);
        Ok(uid)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    /// The uid of the live socket whose local address is `peer` and remote address is
    /// `local`, in the text of `/proc/net/tcp` and/or `/proc/net/tcp6`.
    pub(super) fn owner(tables: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
        let (peer, local) = (canonical(peer), canonical(local));
        tables
            .lines()
            .filter_map(parse_row)
            .find(|row| row.local == peer && row.remote == local)
            .map(|row| row.uid)
    }

    pub(super) struct Row {
        pub(super) local: SocketAddr,
        pub(super) remote: SocketAddr,
        pub(super) uid: u32,
    }

    /// One row: `sl local remote st tx:rx tr:when retrnsmt uid timeout inode ...`. Header
    /// lines and sockets without an inode are `None`: a socket its owner already closed
    /// (`TIME_WAIT`, orphaned `FIN_WAIT`) shows uid 0 and inode 0, which must not pass as
    /// root's.
    pub(super) fn parse_row(line: &str) -> Option<Row> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 || !fields[0].ends_with(':') {
            return None;
        }
        if fields[9] == "0" {
            return None;
        }
        Some(Row {
            local: parse_address(fields[1])?,
            remote: parse_address(fields[2])?,
            uid: fields[7].parse().ok()?,
        })
    }

    /// `0100007F:CB7F` or 32 hex digits `:` port. The kernel prints each 32-bit word of the
    /// address as a native-endian integer (`%08X`), so each word's bytes are its native
    /// bytes; the port is a plain host-order number.
    pub(super) fn parse_address(text: &str) -> Option<SocketAddr> {
        let (address, port) = text.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let word = |i: usize| {
            let hex = address.get(i * 8..i * 8 + 8)?;
            u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
        };
        let ip = match address.len() {
            8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
            32 => {
                let mut bytes = [0_u8; 16];
                for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                    chunk.copy_from_slice(&word(i)?);
                }
                IpAddr::V6(Ipv6Addr::from(bytes))
            }
            _ => return None,
        };
        Some(canonical(SocketAddr::new(ip, port)))
    }

    /// A v4-mapped IPv6 address as the IPv4 address it is.
    fn canonical(address: SocketAddr) -> SocketAddr {
        match address.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, |v4| {
                SocketAddr::new(IpAddr::V4(v4), address.port())
            }),
            IpAddr::V4(_) => address,
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::SocketAddr;

    use super::linux::{owner, parse_address, parse_row};
    use super::{Owners, admit};

    // Real lines from Debian 12 (x86_64): a listener on 127.0.0.1:41679, the server side of
    // two accepted connections, a TIME_WAIT left by an earlier connection, and a client of
    // uid 65534 on 127.0.0.1:39604 (IPv4 socket) and 39598 (dual-stack IPv6 socket).
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A2CF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1250574 1 000000002886e72e 100 0 0 10 0
   2: 0100007F:A2CF 0100007F:9AAE 01 00000000:00000000 00:00000000 00000000     0        0 1250576 1 00000000c3f3b3a3 20 0 0 10 -1
   3: 0100007F:A2CF 0100007F:9AB4 01 00000000:00000000 00:00000000 00000000     0        0 1250628 1 00000000da21055e 20 0 0 10 -1
   4: 0100007F:C0F4 0100007F:CB7F 06 00000000:00000000 03:0000166B 00000000     0        0 0 3 00000000a8cc71b0
   5: 0100007F:9AB4 0100007F:A2CF 01 00000000:00000000 00:00000000 00000000 65534        0 1249956 2 0000000008e9133b 20 0 0 10 -1
";
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 00000000000000000000000001000000:DB9F 00000000000000000000000001000000:A282 01 00000000:00000000 00:00000000 00000000     0        0 1249811 1 00000000e77330ba 20 0 0 10 -1
   2: 0000000000000000FFFF00000100007F:9AAE 0000000000000000FFFF00000100007F:A2CF 01 00000000:00000000 00:00000000 00000000 65534        0 1249955 2 00000000a5890a33 20 0 0 10 -1
";

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn addresses_parse_per_native_endian_word() {
        assert_eq!(
            parse_address("0100007F:A2CF"),
            Some(addr("127.0.0.1:41679"))
        );
        assert_eq!(parse_address("00000000:0016"), Some(addr("0.0.0.0:22")));
        assert_eq!(
            parse_address("00000000000000000000000001000000:DB9F"),
            Some(addr("[::1]:56223"))
        );
        // 2001:db8::1, as the kernel prints it.
        assert_eq!(
            parse_address("B80D0120000000000000000001000000:0050"),
            Some(addr("[2001:db8::1]:80"))
        );
        // v4-mapped comes back as IPv4.
        assert_eq!(
            parse_address("0000000000000000FFFF00000100007F:9AAE"),
            Some(addr("127.0.0.1:39598"))
        );
        for bad in [
            "",
            "0100007F",
            "0100007:A2CF",
            "0100007F:XYZ",
            "0100007F:1FFFF",
        ] {
            assert_eq!(parse_address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rows_skip_headers_and_closed_sockets() {
        let rows: Vec<_> = TCP.lines().filter_map(parse_row).collect();
        // Header and TIME_WAIT (inode 0, uid 0) are left out.
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3].local, addr("127.0.0.1:39604"));
        assert_eq!(rows[3].remote, addr("127.0.0.1:41679"));
        assert_eq!(rows[3].uid, 65534);
    }

    #[test]
    fn the_client_row_names_the_owner() {
        let listener = addr("127.0.0.1:41679");
        // IPv4 client socket; the server-side row (local = listener) must not match instead.
        assert_eq!(owner(TCP, addr("127.0.0.1:39604"), listener), Some(65534));
        // A dual-stack client socket is found in tcp6.
        let both = format!("{TCP}{TCP6}");
        assert_eq!(owner(&both, addr("127.0.0.1:39598"), listener), Some(65534));
        assert_eq!(owner(TCP, addr("127.0.0.1:39598"), listener), None);
        // A closed client (TIME_WAIT shows uid 0) is not found, so root's check fails closed.
        assert_eq!(
            owner(TCP, addr("127.0.0.1:49396"), addr("127.0.0.1:52095")),
            None
        );
        // IPv6 loopback rows match by IPv6 address.
        assert_eq!(
            owner(TCP6, addr("[::1]:56223"), addr("[::1]:41602")),
            Some(0)
        );
    }

    #[test]
    fn a_connection_of_this_process_is_admitted_and_an_unknown_one_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("local address");
        let _client = std::net::TcpStream::connect(local).expect("connect");
        let (_server, peer) = listener.accept().expect("accept");
        let mut owners = Owners::default();
        assert!(admit(&mut owners, peer, local));
        // No such socket: fail closed, even after re-reading the tables.
        let unknown = addr("127.0.0.1:1");
        assert!(!admit(&mut owners, unknown, local));
    }
}
