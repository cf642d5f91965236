//! The background tunnel as a process: starting it detached, finding out whether the recorded
//! PID is still ours, and ending it by that PID only after checking.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::{TunnelRecord, log_path, record_path};
use crate::{Error, Result};

/// What the state folder says about the background tunnel.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TunnelStatus {
    /// Its process runs.
    Running(TunnelRecord),
    /// A record whose process is gone or is another program now; [`status`] removed it.
    Stale(TunnelRecord, Liveness),
    /// No record.
    None,
}

/// Whether a recorded process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Liveness {
    /// The recorded PID runs with the recorded start time: it is ours.
    Running,
    /// No process has the PID (or it is a zombie).
    Gone,
    /// The PID now belongs to another process.
    NotOurs,
}

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Down {
    /// It ran and was stopped.
    Stopped,
    /// Only a stale record was found (and removed).
    Stale,
    /// Nothing ran.
    None,
}

impl Down {
    /// `stopped`, `stale` or `none` (for JSON output).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Stale => "stale",
            Self::None => "none",
        }
    }
}

/// Reads the record in `state_dir`, removing it when its process is gone or is not ours.
///
/// # Errors
///
/// [`Error::Io`] when the record cannot be read or removed, [`Error::Settings`] when it does not
/// parse.
pub fn status(state_dir: &Path) -> Result<TunnelStatus> {
    let path = record_path(state_dir);
    let Some(record) = TunnelRecord::read(&path)? else {
        return Ok(TunnelStatus::None);
    };
    match record.liveness() {
        Liveness::Running => Ok(TunnelStatus::Running(record)),
        liveness => {
            TunnelRecord::remove(&path)?;
            Ok(TunnelStatus::Stale(record, liveness))
        }
    }
}

/// Ends the background tunnel recorded in `state_dir`: SIGTERM, then SIGKILL after `grace`.
/// The PID is signalled only while it is still the recorded process (same start time).
///
/// # Errors
///
/// As [`status`], and [`Error::TunnelProcess`] for a record with an impossible PID.
pub async fn stop(state_dir: &Path, grace: Duration) -> Result<Down> {
    let record = match status(state_dir)? {
        TunnelStatus::Running(record) => record,
        TunnelStatus::Stale(..) => return Ok(Down::Stale),
        TunnelStatus::None => return Ok(Down::None),
    };
    let pid = i32::try_from(record.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| Error::TunnelProcess {
            detail: format!(
                "the record {} names pid {}, which cannot be a process; remove the file",
                record_path(state_dir).display(),
                record.pid
            ),
        })?;
    tracing::info!(pid = record.pid, "stopping the background tunnel");
    signal_recorded(&record, pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + grace;
    while record.liveness() == Liveness::Running {
        if Instant::now() >= deadline {
            tracing::warn!(
                pid = record.pid,
                "the background tunnel ignored SIGTERM; sending SIGKILL"
            );
            signal_recorded(&record, pid, rustix::process::Signal::KILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    TunnelRecord::remove(&record_path(state_dir))?;
    Ok(Down::Stopped)
}

/// Sends `signal` to the recorded process only. On Linux through a pidfd: the descriptor pins
/// one process, and the start time is checked after it was opened, so a PID reused between
/// the check and the signal cannot receive it. Elsewhere the check comes right before the
/// signal (a small window remains; the README says so).
fn signal_recorded(
    record: &TunnelRecord,
    pid: rustix::process::Pid,
    signal: rustix::process::Signal,
) {
    #[cfg(target_os = "linux")]
    {
        let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        else {
            return; // gone already
        };
        if record.liveness() == Liveness::Running {
            let _ = rustix::process::pidfd_send_signal(&pidfd, signal);
        }
    }
    #[cfg(not(target_os = "linux"))]
    if record.liveness() == Liveness::Running {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Starts `command` (a program that runs [`super::run_background_tunnel`], with its arguments
/// and environment set by the caller) detached in its own process group, with its output
/// appended to the state folder's log (mode 0600), and waits up to `limit` until it recorded
/// itself.
///
/// Secrets belong in the command's environment, never in its arguments (`ps` shows those).
///
/// # Errors
///
/// [`Error::Io`] when the state folder or log cannot be written or the program cannot start;
/// [`Error::TunnelProcess`] when it exits before it recorded itself (with its last error line)
/// or does not record itself in time (it is killed then).
pub async fn spawn(
    mut command: Command,
    state_dir: &Path,
    limit: Duration,
) -> Result<TunnelRecord> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|source| Error::Io {
            operation: "create",
            path: state_dir.to_owned(),
            source,
        })?;
    super::check_private_dir(state_dir)?;
    let log = log_path(state_dir);
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log)
            .map_err(|source| Error::Io {
                operation: "open",
                path: log.clone(),
                source,
            })
    };
    command
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?)
        // Its own process group: Ctrl-C in the caller's terminal does not reach it.
        .process_group(0);
    let mut child = command.spawn().map_err(|source| Error::Io {
        operation: "start",
        path: command.get_program().into(),
        source,
    })?;
    let pid = child.id();
    let record = record_path(state_dir);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = TunnelRecord::read(&record)?
            && found.pid == pid
        {
            return Ok(found);
        }
        let exited = child.try_wait().map_err(|source| Error::Io {
            operation: "wait for",
            path: command.get_program().into(),
            source,
        })?;
        if let Some(exit) = exited {
            return Err(Error::TunnelProcess {
                detail: format!("it exited ({exit}) before it was up: {}", log_tail(&log)),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::TunnelProcess {
                detail: format!(
                    "it was not up within {limit:?} and was killed; see {}",
                    log.display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The process's own error line (it prints `error: ...` last), else the log's last line.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|line| line.starts_with("error: "))
        .map(|line| line.trim_start_matches("error: "))
        .or_else(|| text.lines().rev().find(|line| !line.trim().is_empty()))
        .unwrap_or("no output");
    format!("{last} (log {})", path.display())
}

/// The start time of process `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`),
/// or `None` when no such process runs (zombies count as gone).
#[cfg(target_os = "linux")]
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Without `/proc` there is no start time to compare: `Some(0)` while a process with the PID
/// exists, so a reused PID cannot be told apart on this OS (documented in the README).
#[cfg(not(target_os = "linux"))]
pub fn process_start_time(pid: u32) -> Option<u64> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::test_kill_process(pid).ok().map(|()| 0)
}

/// The fields of a `/proc/<pid>/stat` line this crate reads (one parser for the whole crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcStat {
    /// The state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// The parent's PID (field 4).
    pub ppid: u32,
    /// The start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

impl ProcStat {
    /// Parses a line; `None` when it is malformed. Pure. The command name (field 2) is in
    /// parentheses and may hold spaces and `)`, so fields are counted after the last `)`.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Self {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    /// Whether the process is a zombie (or dead): gone, for every purpose here.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Field 22 of a `/proc/<pid>/stat` line, `None` for a zombie or a malformed line. Pure.
pub fn parse_stat(stat: &str) -> Option<u64> {
    ProcStat::parse(stat)
        .filter(|fields| !fields.is_zombie())
        .map(|fields| fields.start_time)
}

/// Whether `pid` runs with `start_time`.
pub fn liveness(pid: u32, start_time: u64) -> Liveness {
    match process_start_time(pid) {
        None => Liveness::Gone,
        Some(now) if now == start_time => Liveness::Running,
        Some(_) => Liveness::NotOurs,
    }
}
