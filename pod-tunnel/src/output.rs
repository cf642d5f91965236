//! What a remote command produced: plain data, no I/O.

use std::fmt;

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a remote command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    code: Option<i32>,
    signal: Option<String>,
}

impl ExitStatus {
    pub(crate) fn new(code: Option<i32>, signal: Option<String>) -> Self {
        Self { code, signal }
    }

    /// The exit code, unless the command was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.code
    }

    /// The signal name (without `SIG`) that killed the command, if any.
    pub fn signal(&self) -> Option<&str> {
        self.signal.as_deref()
    }

    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.signal) {
            (_, Some(signal)) => write!(f, "signal {signal}"),
            (Some(code), None) => write!(f, "exit code {code}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// What a finished command produced.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExecOutput {
    /// How it ended.
    pub status: ExitStatus,
    /// Captured standard output (at most the configured limit).
    pub stdout: Vec<u8>,
    /// Captured standard error (at most the configured limit).
    pub stderr: Vec<u8>,
    /// Whether standard output exceeded the limit and was cut.
    pub stdout_truncated: bool,
    /// Whether standard error exceeded the limit and was cut.
    pub stderr_truncated: bool,
}

impl ExecOutput {
    /// Standard output as (lossy) UTF-8.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as (lossy) UTF-8.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The last non-blank line of standard error (at most 300 characters), for messages.
    pub(crate) fn stderr_tail(&self) -> String {
        let text = self.stderr_lossy();
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no stderr");
        line.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_say_how_a_command_ended() {
        assert_eq!(ExitStatus::new(Some(3), None).to_string(), "exit code 3");
        let killed = ExitStatus::new(None, Some("KILL".into()));
        assert_eq!(killed.to_string(), "signal KILL");
        assert!(!killed.success());
        assert!(ExitStatus::new(Some(0), None).success());
    }

    #[test]
    fn the_stderr_tail_is_the_last_non_blank_line() {
        let mut out = ExecOutput {
            status: ExitStatus::new(Some(1), None),
            stdout: Vec::new(),
            stderr: b"first\nlast words\n  \n".to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
        };
        assert_eq!(out.stderr_tail(), "last words");
        out.stderr.clear();
        assert_eq!(out.stderr_tail(), "no stderr");
    }
}
