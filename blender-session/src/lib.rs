//! Orchestrates remote Blender sessions on RunPod pods.
//!
//! Status: skeleton. The crate's own issue fills it in; the workspace compiles with it today.
