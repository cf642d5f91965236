//! Integration tests for project-store: real files, real permissions, real child processes.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod concurrent;
mod config;
mod dotenv_props;
mod init;
mod logs;
mod projects;
mod support;
