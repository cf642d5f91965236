//! The rpb local workspace: `.env` configuration, projects and saved `.blend` versions.
//!
//! Status: skeleton. The crate's own issue fills it in; the workspace compiles with it today.
