//! Shared fixtures for rpb's tests. Not published.

pub mod contract;
