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

/// `(pid, parent pid, start time)` of every process, from `/proc/PID/stat`.
fn process_table() -> Vec<(u32, u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let fields = ProcStat::parse(&stat)?;
            Some((pid, fields.ppid, fields.start_time))
        })
        .collect()
}

pub(super) use pod_tunnel::fixture::descendants;

/// SIGKILL to each process a session PID file names (`PID STARTTIME`, as `session.sh` writes
/// them) when that PID still has that start time, and to its descendants.
pub(super) fn kill_recorded(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    let table = process_table();
    for entry in entries.flatten() {
        if entry.path().extension().is_none_or(|ext| ext != "pid") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let mut fields = text.split_whitespace();
        let (Some(Ok(pid)), Some(Ok(started))) = (
            fields.next().map(str::parse::<u32>),
            fields.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if table.iter().any(|&(p, _, s)| p == pid && s == started) {
            let family = descendants(pid);
            kill(pid);
            for child in family {
                kill(child);
            }
            tracing::warn!(pid, file = %entry.path().display(), "killed a session process left running");
        }
    }
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
