//! The commands, grouped by job: each parses its arguments into library calls and describes
//! the result. They use `crate::ctx` and `crate::output`, never `main` or each other's
//! internals (render and demo reuse `blender::attach` and `blender::mcp_json`).

pub(crate) mod adopt;
pub(crate) mod blender;
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod farm;
pub(crate) mod files;
pub(crate) mod render;
pub(crate) mod session;
pub(crate) mod setup;
pub(crate) mod trust;
pub(crate) mod tunnel;
pub(crate) mod volume;
