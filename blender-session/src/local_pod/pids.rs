//! Processes by PID: the `/proc` table, a process's descendants, SIGKILL, and the session's
//! PID files. Nothing is ever killed by name.

use std::path::Path;

use crate::daemon::ProcStat;

pub(super) fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

pub(super) use pod_tunnel::fixture::descendants;

/// SIGKILL to each process a session PID file names (`PID STARTTIME`, as `session.sh` writes
/// them) when that PID still has that start time, and to its descendants.
pub(super) fn kill_recorded(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path().extension().is_none_or(|ext| ext != "pid") {
            continue;
        }
        if kill_recorded_file(&entry.path()) {
            tracing::warn!(file = %entry.path().display(), "killed a session process left running");
        }
    }
}

/// SIGKILL to the process one PID file names, if it still runs with the recorded start time,
/// and to its descendants; whether it did.
pub(super) fn kill_recorded_file(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let mut fields = text.split_whitespace();
    let (Some(Ok(pid)), Some(Ok(started))) = (
        fields.next().map(str::parse::<u32>),
        fields.next().map(str::parse::<u64>),
    ) else {
        return false;
    };
    let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| ProcStat::parse(&stat))
        .is_some_and(|stat| stat.start_time == started);
    if !running {
        return false;
    }
    let family = descendants(pid);
    kill(pid);
    for child in family {
        kill(child);
    }
    true
}

/// Whether any session PID file exists.
pub(super) fn has_pid_files(run_dir: &Path) -> bool {
    std::fs::read_dir(run_dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.path().extension().is_some_and(|ext| ext == "pid"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let stat = "4242 (my (odd) prog) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        let fields = ProcStat::parse(stat).expect("parses");
        assert_eq!((fields.ppid, fields.start_time), (17, 987_654));
        assert_eq!(ProcStat::parse("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields = ProcStat::parse(&own).unwrap();
        assert_eq!(fields.ppid, std::os::unix::process::parent_id());
    }
}
