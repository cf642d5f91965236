//! A render farm on Slurm: the configuration generated from the farm's nodes, the controller's
//! view of nodes and tasks (`sinfo --json`, `squeue --json`), frames cut into array tasks, and
//! the commands that recover from a lost node.
//!
//! rpb uses Slurm as its farm engine, not a scheduler of its own: one job array per render, one
//! task per chunk of frames, `--requeue`, so a lost node's tasks run again on the others. The
//! local farm (`local_pod::farm`, feature `local-pod`) runs the same on this machine.
//!
//! ```
//! use blender_session::farm::{SlurmConf, SlurmNode, chunks, default_chunk_size};
//!
//! let mut conf = SlurmConf::new("rpbfarm", "ctl", 6817, "/runpod/rpb/farm");
//! conf.nodes = vec![
//!     SlurmNode::new("pod-a", "pod-a.runpod.internal", 6818),
//!     SlurmNode::new("pod-b", "pod-b.runpod.internal", 6818),
//! ];
//! let text = conf.render()?;
//! assert!(text.contains("PartitionName=render Nodes=pod-a,pod-b"));
//!
//! let size = default_chunk_size(250, 2);
//! let tasks = chunks(1, 250, size);
//! assert_eq!(tasks.first().map(|c| (c.first, c.last)), Some((1, 32)));
//! # Ok::<(), blender_session::Error>(())
//! ```

mod chunks;
mod slurm_conf;
mod status;

pub use chunks::{Chunk, array_spec, chunk_frames, chunks, default_chunk_size};
pub use slurm_conf::{SlurmConf, SlurmNode};
pub use status::{
    FarmNode, FarmTask, mark_node_lost, marked_lost_by_rpb, parse_sinfo, parse_squeue,
    release_requeued, resume_node,
};
