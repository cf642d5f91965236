//! Blender's render output, parsed line by line.
//! TEMPORARY STUB written by the lead only so the rest compiles: the helper replaces this file
//! wholesale.
#![allow(missing_docs, dead_code, unreachable_pub)]

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LogLine {
    Progress(Progress),
    Saved {
        path: String,
    },
    FrameTime {
        seconds: f64,
        saving_seconds: Option<f64>,
    },
    SkippedExisting {
        path: Option<String>,
    },
    Warning {
        message: String,
    },
    Error {
        message: String,
    },
}
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    pub frame: Option<i64>,
    pub elapsed_seconds: Option<f64>,
    pub remaining_seconds: Option<f64>,
    pub samples: Option<(u32, u32)>,
    pub status: String,
}
pub fn parse_line(line: &str) -> Option<LogLine> {
    let last = line.rsplit(" | ").next()?;
    let (done, total) = last.strip_prefix("Sample ")?.split_once('/')?;
    Some(LogLine::Progress(Progress {
        frame: None,
        elapsed_seconds: None,
        remaining_seconds: None,
        samples: Some((done.parse().ok()?, total.parse().ok()?)),
        status: last.to_owned(),
    }))
}
#[derive(Debug, Default)]
pub struct LineSplitter;
impl LineSplitter {
    pub fn new() -> Self {
        Self
    }
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(chunk)
            .lines()
            .map(str::to_owned)
            .collect()
    }
    pub fn finish(&mut self) -> Option<String> {
        None
    }
}
