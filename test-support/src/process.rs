//! Processes and ports as tests see them on Linux: a free loopback port, and what
//! `/proc/<pid>/stat` says (alive or zombie, parent, process group, start time), so no test
//! parses it by hand.

use std::net::TcpListener;

use anyhow::Context as _;

/// A port that was free a moment ago on 127.0.0.1 (racy by nature; callers retry).
///
/// # Errors
/// Fails when no loopback port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The fields of `/proc/<pid>/stat` tests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The process.
    pub pid: u32,
    /// Its state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Its parent.
    pub ppid: u32,
    /// Its process group.
    pub pgrp: u32,
    /// Its start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

impl Stat {
    /// Parses one `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and
    /// may hold spaces and `)`, so fields are read after the last `)`.
    pub fn parse(line: &str) -> Option<Self> {
        let (head, rest) = line.rsplit_once(')')?;
        let pid = head.split_whitespace().next()?.parse().ok()?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Self {
            pid,
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    /// Whether it is a zombie (or dead).
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// `/proc/<pid>/stat`, when the process exists.
pub fn stat(pid: u32) -> Option<Stat> {
    Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process's stat line that could be read.
pub fn all() -> Vec<Stat> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(stat)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` runs: present, and not a zombie whose threads have all exited (a killed
/// multi-threaded process's main thread is a zombie while the others still exit).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|stat| {
        !stat.is_zombie()
            || std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
    })
}

pub use pod_tunnel::fixture::descendants;

/// Live members of process group `group`.
pub fn group_members(group: u32) -> Vec<u32> {
    all()
        .into_iter()
        .filter(|stat| stat.pgrp == group && !stat.is_zombie())
        .map(|stat| stat.pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_command_names_parse() {
        let line =
            "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = Stat::parse(line).expect("parses");
        assert_eq!(
            (stat.pid, stat.state, stat.ppid, stat.pgrp, stat.start_time),
            (4242, 'S', 17, 4242, 987_654)
        );
        assert!(Stat::parse("garbage").is_none());
    }

    #[test]
    fn this_process_and_a_child_are_seen() {
        let own = stat(std::process::id()).expect("own stat");
        assert!(alive(own.pid) && !own.is_zombie());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        assert!(descendants(own.pid).contains(&child.id()));
        child.kill().expect("kill");
        child.wait().expect("reaped");
        assert!(!alive(child.id()));
        assert!(!descendants(own.pid).contains(&child.id()));
    }
}
