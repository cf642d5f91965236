//! Frames cut into chunks: one Slurm array task per chunk.

/// A run of frames one array task renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Chunk {
    /// The array task id (`SLURM_ARRAY_TASK_ID`), from 1.
    pub task: u32,
    /// The first frame.
    pub first: i64,
    /// The last frame (included).
    pub last: i64,
}

/// Frames `first..=last` in chunks of `size` frames (the last one may be shorter), tasks
/// numbered from 1. Empty when `last < first`; a `size` of 0 counts as 1.
pub fn chunks(first: i64, last: i64, size: u32) -> Vec<Chunk> {
    let size = i64::from(size.max(1));
    let mut out = Vec::new();
    let mut start = first;
    let mut task = 1_u32;
    while start <= last {
        let end = start.saturating_add(size - 1).min(last);
        out.push(Chunk {
            task,
            first: start,
            last: end,
        });
        task += 1;
        start = end.saturating_add(1);
        if end == i64::MAX {
            break;
        }
    }
    out
}

/// The default chunk size: about four tasks per node, so a lost node's share is small and
/// the last tasks finish close together; at least one frame, at most 50.
pub fn default_chunk_size(frames: u64, nodes: u32) -> u32 {
    let tasks = u64::from(nodes.max(1)) * 4;
    let size = frames.div_ceil(tasks).clamp(1, 50);
    u32::try_from(size).unwrap_or(50)
}

/// `sbatch --array` for these chunks: `1-N`.
pub fn array_spec(chunks: &[Chunk]) -> String {
    match chunks.len() {
        0 => String::new(),
        1 => "1".into(),
        n => format!("1-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_into_numbered_chunks_with_a_short_last_one() {
        let cut = chunks(1, 10, 4);
        let spans: Vec<(u32, i64, i64)> = cut.iter().map(|c| (c.task, c.first, c.last)).collect();
        assert_eq!(spans, [(1, 1, 4), (2, 5, 8), (3, 9, 10)]);
        assert_eq!(array_spec(&cut), "1-3");
        assert_eq!(chunks(5, 5, 0).len(), 1);
        assert!(chunks(5, 4, 3).is_empty());
        assert_eq!(array_spec(&[]), "");
        // Every frame exactly once, whatever the size.
        for size in 1..12 {
            let frames: Vec<i64> = chunks(-3, 17, size)
                .iter()
                .flat_map(|c| c.first..=c.last)
                .collect();
            assert_eq!(frames, (-3..=17).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_default_gives_each_node_about_four_tasks() {
        assert_eq!(default_chunk_size(250, 10), 7);
        assert_eq!(default_chunk_size(8, 2), 1);
        assert_eq!(default_chunk_size(0, 2), 1);
        assert_eq!(default_chunk_size(100_000, 1), 50);
    }
}
