//! Shared fixtures for rpb's tests. Not published.

pub mod browser;
pub mod contract;
pub mod names;
pub mod net;
pub mod process;
pub mod python_peers;
pub mod scenes;
pub mod sshd;
