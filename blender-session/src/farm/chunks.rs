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

/// Cuts a job's frames (any list: `1-100x5` too) into array tasks of `size` frames, numbered
/// from 1, in order.
pub fn chunk_frames(frames: &[i64], size: u32) -> Vec<(u32, Vec<i64>)> {
    let size = usize::try_from(size.max(1)).unwrap_or(usize::MAX);
    frames
        .chunks(size)
        .zip(1..)
        .map(|(frames, task)| (task, frames.to_vec()))
        .collect()
}

#[cfg(test)]
mod frame_list_tests {
    use super::*;

    #[test]
    fn a_frame_list_is_cut_in_order_with_every_frame_once() {
        let frames: Vec<i64> = (1..=100).step_by(5).collect();
        for size in 1..=21 {
            let tasks = chunk_frames(&frames, size);
            let joined: Vec<i64> = tasks.iter().flat_map(|(_, f)| f.clone()).collect();
            assert_eq!(joined, frames, "size {size}");
            assert!(tasks.iter().all(|(_, f)| f.len() <= size as usize));
            let numbers: Vec<u32> = tasks.iter().map(|(task, _)| *task).collect();
            assert_eq!(
                numbers,
                (1..=u32::try_from(tasks.len()).unwrap()).collect::<Vec<_>>()
            );
        }
        assert_eq!(chunk_frames(&[7], 0), vec![(1, vec![7])]);
    }
}
