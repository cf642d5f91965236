//! Remote Blender sessions on `RunPod` pods: the pod-side assets and the client for Blender's
//! MCP socket.
//!
//! - [`assets`] embeds rpb's own pod-side files (setup script, session script, boot hook and
//!   the Blender addon) with a content version, and writes them to a folder for upload.
//! - [`mcp`] talks to the addon over the blender-mcp wire protocol (through the SSH tunnel in
//!   real use).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use blender_session::{assets, mcp};
//!
//! // Lay the pod-side files out for upload; the pod runs `bash setup.sh`, then `session.sh`.
//! let dir = std::env::temp_dir().join("rpb-assets");
//! assets::write_to(&dir)?;
//! println!("assets version {}", assets::version());
//!
//! // Once the session runs and the tunnel is up, drive Blender.
//! let mut blender = mcp::Client::connect("127.0.0.1:9876").await?;
//! let info = blender.addon_info().await?;
//! println!("Blender {} renders on {:?}", info.blender_version, info.compute.backend);
//! for name in blender.scene_info().await?.object_names() {
//!     println!("{name}");
//! }
//! # Ok(())
//! # }
//! ```

pub mod assets;
mod error;
pub mod mcp;

pub use error::{Error, Result};
