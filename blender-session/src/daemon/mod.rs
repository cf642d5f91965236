//! The managed background tunnel: its state file, the check that a recorded PID is still the
//! process that wrote it, and the cost guard's decision.
//!
//! A program that keeps a session's tunnel open in a background process (as `rpb start` and
//! `rpb tunnel up` do) records it in [`TunnelRecord`] at [`record_path`] in the workspace's
//! state folder. Before signalling the recorded PID, a caller checks [`TunnelRecord::liveness`]:
//! the PID counts as ours only while `/proc/<pid>/stat` reports the same start time, so a PID
//! reused by another program is never signalled.
//!
//! ```no_run
//! use blender_session::daemon::{Liveness, TunnelRecord, record_path};
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = project_store::Store::open("/home/me/blender-files/runpod")?;
//! let path = record_path(&store.state_dir());
//! match TunnelRecord::read(&path)? {
//!     Some(record) => match record.liveness() {
//!         Liveness::Running => println!("tunnel of pod {} runs as pid {}", record.pod_id, record.pid),
//!         _ => TunnelRecord::remove(&path)?, // gone, or the PID is another program's now
//!     },
//!     None => println!("no tunnel"),
//! }
//! # Ok(())
//! # }
//! ```

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod process;
mod supervisor;

pub use process::{
    Down, Liveness, ProcStat, TunnelStatus, liveness, parse_stat, process_start_time, spawn,
    status, stop,
};
pub use supervisor::{Ending, SupervisorOptions, run_background_tunnel};

/// File name of the tunnel record in the state folder.
pub const RECORD_FILE: &str = "tunnel.json";
/// File name of the cost guard's last stop in the state folder.
pub const GUARD_FILE: &str = "cost-guard.json";
/// File name of the background tunnel's log in the state folder.
pub const LOG_FILE: &str = "tunnel.log";

/// `<state dir>/tunnel.json`.
pub fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join(RECORD_FILE)
}

/// `<state dir>/cost-guard.json`.
pub fn guard_path(state_dir: &Path) -> PathBuf {
    state_dir.join(GUARD_FILE)
}

/// `<state dir>/tunnel.log`.
pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOG_FILE)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The cost guard's limits.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CostGuard {
    /// Stop the pod this many hours after the tunnel started. Default: none.
    pub max_hours: Option<f64>,
    /// Stop the pod after this many minutes without traffic through the tunnel. Default: none.
    pub idle_stop_minutes: Option<f64>,
}

impl CostGuard {
    /// A guard with the given limits.
    pub fn new(max_hours: Option<f64>, idle_stop_minutes: Option<f64>) -> Self {
        Self {
            max_hours,
            idle_stop_minutes,
        }
    }

    /// Whether any limit is set.
    pub fn is_armed(&self) -> bool {
        self.max_hours.is_some() || self.idle_stop_minutes.is_some()
    }

    /// Why the pod must stop now, if it must: `running_for` since the tunnel started,
    /// `idle_for` since the last byte moved through it. Pure.
    pub fn decide(&self, running_for: Duration, idle_for: Duration) -> Option<GuardReason> {
        if let Some(hours) = self.max_hours
            && running_for.as_secs_f64() >= hours * 3600.0
        {
            return Some(GuardReason::MaxHours { hours });
        }
        if let Some(minutes) = self.idle_stop_minutes
            && idle_for.as_secs_f64() >= minutes * 60.0
        {
            return Some(GuardReason::Idle { minutes });
        }
        None
    }

    /// How long after the start the hours limit is reached, if one is set.
    pub fn max_duration(&self) -> Option<Duration> {
        self.max_hours
            .and_then(|hours| Duration::try_from_secs_f64(hours * 3600.0).ok())
    }

    /// How long without traffic the idle limit allows, if one is set.
    pub fn idle_limit(&self) -> Option<Duration> {
        self.idle_stop_minutes
            .and_then(|minutes| Duration::try_from_secs_f64(minutes * 60.0).ok())
    }
}

/// Why the cost guard stopped a pod.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum GuardReason {
    /// The session ran for its `--max-hours`.
    MaxHours {
        /// The limit.
        hours: f64,
    },
    /// No traffic moved through the tunnel for `--idle-stop` minutes.
    Idle {
        /// The limit.
        minutes: f64,
    },
}

impl std::fmt::Display for GuardReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MaxHours { hours } => write!(f, "the session reached --max-hours {hours}"),
            Self::Idle { minutes } => write!(
                f,
                "no traffic through the tunnel for {minutes} min (--idle-stop)"
            ),
        }
    }
}

/// What a background tunnel process records about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TunnelRecord {
    /// Its PID.
    pub pid: u32,
    /// Its start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    /// The pod.
    pub pod_id: String,
    /// Local port of Blender's MCP socket.
    pub mcp_port: u16,
    /// Local port of rpb's command socket in Blender (0 in a record of an rpb without one).
    #[serde(default)]
    pub control_port: u16,
    /// Local port of VNC.
    pub vnc_port: u16,
    /// Local port of noVNC.
    pub novnc_port: u16,
    /// When it opened the tunnel (seconds since the Unix epoch).
    pub started_at: u64,
    /// Its cost guard.
    #[serde(default)]
    pub guard: CostGuard,
    /// Its log file.
    pub log: PathBuf,
}

impl TunnelRecord {
    /// A record for the current process.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when `/proc/self/stat` cannot be read.
    pub fn for_current_process(
        pod_id: impl Into<String>,
        ports: crate::seams::TunnelPorts,
        guard: CostGuard,
        log: impl Into<PathBuf>,
    ) -> Result<Self> {
        let pid = std::process::id();
        let start_time = process_start_time(pid).ok_or_else(|| Error::Io {
            operation: "read",
            path: PathBuf::from("/proc/self/stat"),
            source: std::io::Error::other("no start time"),
        })?;
        Ok(Self {
            pid,
            start_time,
            pod_id: pod_id.into(),
            mcp_port: ports.mcp,
            control_port: ports.control,
            vnc_port: ports.vnc,
            novnc_port: ports.novnc,
            started_at: unix_now(),
            guard,
            log: log.into(),
        })
    }

    /// Whether the recorded process still runs and is the one that wrote the record.
    pub fn liveness(&self) -> Liveness {
        liveness(self.pid, self.start_time)
    }

    /// The noVNC page through the tunnel.
    pub fn novnc_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/vnc.html?autoconnect=1&resize=scale",
            self.novnc_port
        )
    }

    /// Reads the record; `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot be read, [`Error::Settings`] when it does not parse
    /// (remove the file).
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    operation: "read",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|_| {
            Error::Settings(format!(
                "the tunnel record {} does not parse; remove it",
                path.display()
            ))
        })
    }

    /// Writes the record atomically with mode 0600.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_private_json(path, self)
    }

    /// Removes the record (no error when it is already gone).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it exists and cannot be removed.
    pub fn remove(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                operation: "remove",
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// A stop made by the cost guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GuardStop {
    /// The pod that was stopped.
    pub pod_id: String,
    /// Why.
    pub reason: String,
    /// When (seconds since the Unix epoch).
    pub at: u64,
}

impl GuardStop {
    /// A stop of `pod_id` now.
    pub fn now(pod_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            pod_id: pod_id.into(),
            reason: reason.into(),
            at: unix_now(),
        }
    }

    /// Reads the last guard stop; `None` when there is none or it does not parse.
    pub fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes it atomically with mode 0600.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_private_json(path, self)
    }
}

/// Refuses a state folder that another user owns or that others may write into (they could
/// replace the tunnel record, and with it the PID that `stop` signals).
///
/// # Errors
///
/// [`Error::Io`] when it cannot be read, [`Error::TunnelProcess`] naming the folder and the fix.
pub fn check_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir).map_err(|source| Error::Io {
        operation: "read",
        path: dir.to_owned(),
        source,
    })?;
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(Error::TunnelProcess {
            detail: format!(
                "the state folder {} belongs to uid {}, not to you (uid {uid}); remove it or \
                 choose another workspace",
                dir.display(),
                meta.uid()
            ),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::TunnelProcess {
            detail: format!(
                "the state folder {} is writable by others (mode {:o}); run `chmod 700 {}`",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            ),
        });
    }
    Ok(())
}

pub(crate) fn write_private_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let io = |source| Error::Io {
        operation: "write",
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        check_private_dir(dir)?;
    }
    let temp = path.with_extension(format!("{}.tmp", std::process::id()));
    let json =
        serde_json::to_vec_pretty(value).map_err(|error| io(std::io::Error::other(error)))?;
    let result = (|| {
        // A new file, never an existing one: a planted file or symlink at the temporary name
        // is removed (not followed) and the create is exclusive.
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
        };
        let mut file = match open() {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&temp)?;
                open()?
            }
            other => other?,
        };
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_parser_skips_odd_command_names() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(987_654));
        let zombie = "4242 (x) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000";
        assert_eq!(parse_stat(zombie), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_running_and_a_changed_start_time_is_not_ours() {
        let pid = std::process::id();
        let start = process_start_time(pid).expect("own stat");
        assert_eq!(liveness(pid, start), Liveness::Running);
        assert_eq!(liveness(pid, start + 1), Liveness::NotOurs);
        assert_eq!(liveness(u32::MAX - 1, start), Liveness::Gone);
    }

    #[test]
    fn the_guard_stops_on_either_limit() {
        let guard = CostGuard::new(Some(1.0), Some(10.0));
        assert_eq!(
            guard.decide(Duration::from_secs(60), Duration::from_secs(60)),
            None
        );
        assert!(
            guard
                .decide(Duration::from_secs(3600), Duration::ZERO)
                .is_some_and(|why| why == GuardReason::MaxHours { hours: 1.0 }
                    && why.to_string().contains("--max-hours 1"))
        );
        assert!(
            guard
                .decide(Duration::from_secs(700), Duration::from_secs(600))
                .is_some_and(|why| why == GuardReason::Idle { minutes: 10.0 }
                    && why.to_string().contains("--idle-stop"))
        );
        assert_eq!(
            CostGuard::default().decide(Duration::MAX, Duration::MAX),
            None
        );
        assert!(!CostGuard::default().is_armed());
    }

    #[test]
    fn a_shared_state_folder_and_a_planted_temporary_file_are_refused_or_ignored() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let record = TunnelRecord::for_current_process(
            "pod1",
            crate::seams::TunnelPorts {
                mcp: 1,
                control: 4,
                vnc: 2,
                novnc: 3,
            },
            CostGuard::default(),
            "log",
        )
        .expect("record");
        let path = record_path(&state);
        let error = record.write(&path).expect_err("world-writable");
        assert!(error.to_string().contains("chmod 700"), "{error}");
        assert!(!path.exists());

        // A symlink planted at the temporary name is replaced, never followed.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").expect("victim");
        let temp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &temp).expect("plant");
        record.write(&path).expect("written");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep me");
        assert_eq!(TunnelRecord::read(&path).expect("read"), Some(record));
    }

    #[test]
    fn records_round_trip_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = record_path(dir.path());
        assert_eq!(TunnelRecord::read(&path).expect("read"), None);
        let ports = crate::seams::TunnelPorts {
            mcp: 1,
            control: 4,
            vnc: 2,
            novnc: 3,
        };
        let record = TunnelRecord::for_current_process("pod1", ports, CostGuard::default(), "log")
            .expect("record");
        record.write(&path).expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(TunnelRecord::read(&path).expect("read"), Some(record));
        TunnelRecord::remove(&path).expect("remove");
        TunnelRecord::remove(&path).expect("remove twice");
    }
}
