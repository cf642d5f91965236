//! pod-tunnel integration tests, against a real OpenSSH `sshd` on loopback
//! (Debian package `openssh-server`).

#![allow(
    clippy::disallowed_methods,
    reason = "#[tokio::test] builds its own runtime and blocks on it"
)]
#![allow(clippy::unwrap_used, reason = "tests panic on setup failures")]

mod common;
mod fixture;
mod local_clients;
mod session;
mod transfer;
mod tunnel;
