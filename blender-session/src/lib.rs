//! Remote Blender sessions on RunPod pods: the orchestrator of the whole lifecycle
//! (create → set up → start → work in Blender → save → stop), the pod-side assets, and the client
//! for Blender's MCP socket.
//!
//! - [`Orchestrator`] drives a pod through a [`seams::PodProvider`] (RunPod's API) and a
//!   [`seams::HostConnector`] (SSH); [`adapters`] implements both for `runpod_api::Client` and
//!   `pod_tunnel`. Every step reports an [`Event`], every wait is bounded, and a start that fails
//!   after starting the pod stops it again.
//! - [`assets`] embeds rpb's own pod-side files (setup script, session script, boot hook and
//!   the Blender addon) with a content version.
//! - [`mcp`] talks to the addon over the blender-mcp wire protocol (through the tunnel).
//! - [`farm`] holds the render farm's Slurm side: the configuration, the controller's view of
//!   nodes and tasks, frame chunks, and recovery from a lost node.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use blender_session::adapters::{RunpodProvider, SshConnector};
//! use blender_session::{Orchestrator, SessionSettings};
//! use secrecy::SecretString;
//!
//! let provider = RunpodProvider::new(runpod_api::Client::from_env()?);
//! let connector = SshConnector::new("/home/me/.runpod/ssh/RunPod-Key-Go", "/home/me/.rpb/known_hosts");
//! let settings = SessionSettings::new(SecretString::from("vnc-password"));
//! let rpb = Orchestrator::new(Arc::new(provider), Arc::new(connector), settings);
//!
//! let show = |event: &blender_session::Event| eprintln!("{:>6.1}s {}: {}", event.elapsed.as_secs_f64(), event.step, event.detail);
//! let session = rpb.start("7h9k2m4n6p", &show).await?;
//! println!("open {}", session.novnc_url());
//!
//! let mut blender = session.mcp().await?;
//! let scene = blender.scene_info().await?;
//! println!("objects: {}", scene.object_names().collect::<Vec<_>>().join(", "));
//! blender.execute_code("import bpy; bpy.ops.mesh.primitive_monkey_add()").await?;
//!
//! let store = project_store::Store::open("/home/me/blender-files/runpod")?;
//! let project = project_store::ProjectName::new("chair")?;
//! let saved = rpb.save(&session, &store, &project, "scene").await?;
//! println!("saved {} ({})", saved.name, saved.sha256);
//!
//! let pod = rpb.stop("7h9k2m4n6p", Some(session), &show).await?;
//! println!("pod is {} and costs ${:.2}/h", pod.status, pod.cost_per_hour);
//! # Ok(())
//! # }
//! ```

pub mod adapters;
pub mod assets;
pub mod catalog;
pub mod costs;
pub mod daemon;
mod error;
pub mod farm;
#[cfg(feature = "local-pod")]
pub mod local_pod;
pub mod mcp;
pub mod orchestrator;
pub mod probe;
pub mod profile;
pub mod render;
pub mod seams;
pub mod volumes;

pub use error::{BoxError, Error, Result};
pub use orchestrator::{
    Event, FARM_KEY_FILE, FARM_RECORD_FILE, FarmDown, FarmNodeStatus, FarmPod, FarmRecord,
    FarmSpec, FarmStatus, FarmUp, Orchestrator, Session, SessionSettings, SessionStatus,
    SlurmCluster, Step,
};
