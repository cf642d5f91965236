//! Integration tests of blender-session: the MCP client against tiny in-test servers, and the
//! pod-side scripts and addon against the real Blender, Xvfb, x11vnc and noVNC of this machine
//! (Debian packages `blender xvfb x11vnc novnc websockify`; a missing one fails the test).

#![expect(
    clippy::disallowed_methods,
    reason = "#[tokio::test] expands to Runtime::block_on: tests own their runtime"
)]

mod addon_python;
mod bpy_versions;
mod error_chain;
mod farm;
mod local_pod;
mod mcp_client;
mod novnc_origin;
mod orchestrator;
mod pod;
mod pod_image;
mod session;
mod session_errors;
mod setup_script;
mod support;
