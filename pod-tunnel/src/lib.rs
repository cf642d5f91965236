//! SSH sessions, remote exec, local port forwarding and file transfer on `ssh2`.
//!
//! Status: skeleton. The crate's own issue fills it in; the workspace compiles with it today.
