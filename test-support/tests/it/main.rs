//! Integration tests of the shared fixtures against real peers: headless Chromium (Debian
//! package `chromium`) and a VNC stack of Xvfb, x11vnc, websockify and noVNC (Debian packages
//! `xvfb x11vnc websockify novnc`; x11vnc brings `tk`, whose `wish` draws on the test display).
//! A missing one fails the test with the package to install.

#![expect(
    clippy::disallowed_methods,
    reason = "#[tokio::test] expands to Runtime::block_on: tests own their runtime"
)]

mod browser;
mod vnc_stack;
