//! Listening sockets, from the kernel's tables: for checks that servers bind loopback only.

/// LISTEN rows of `/proc/net/tcp` and `/proc/net/tcp6`: (address in hex, port).
pub fn listeners() -> Vec<(String, u16)> {
    let mut rows = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&"0A") {
                continue;
            }
            let Some((addr, port)) = fields.get(1).and_then(|local| local.split_once(':')) else {
                continue;
            };
            if let Ok(port) = u16::from_str_radix(port, 16) {
                rows.push((addr.to_owned(), port));
            }
        }
    }
    rows
}

/// 127.0.0.0/8 (little-endian hex `..7F`) or `::1` or IPv4-mapped 127.x.
pub fn is_loopback(hex: &str) -> bool {
    match hex.len() {
        8 => hex.ends_with("7F"),
        32 => {
            hex == "00000000000000000000000001000000"
                || (hex.starts_with("0000000000000000FFFF0000") && hex.ends_with("7F"))
        }
        _ => false,
    }
}
