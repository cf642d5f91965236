//! Blender's render output, parsed line by line.
//!
//! A background render reports on stdout (a few lines, such as the reason a file could not be
//! opened, go to stderr). Two dialects exist, and [`parse_line`] understands both:
//!
//! - **Blender 3.x–4.x** prints plain lines: a status line per change of the frame's state,
//!   `Saved: '<path>'` once the image is written, and the frame's time:
//!   ```text
//!   Fra:1 Mem:9.58M (Peak 9.72M) | Time:00:00.15 | Remaining:00:00.01 | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/4
//!   Saved: '/tmp/rpb-logs/out/3.4-cycles/frame_0001.png'
//!    Time: 00:00.21 (Saving: 00:00.14)
//!   ```
//! - **Blender 5.x** logs through its logger: each line starts with the process's elapsed time
//!   and a category, and messages below the error level carry no level word. Only `Saved:` is
//!   printed by default; the status lines (without `Time:`, with `Remaining: ` and `Mem: `) and
//!   the frame time are logged at INFO, so they appear with `--log render` (or
//!   `--log-level info`):
//!   ```text
//!   00:01.216  render           | Fra: 1 | Remaining: 00:00.00 | Mem: 2M | Sample 1/4
//!   00:01.330  render           | Saved: '/tmp/rpb-logs/out/5.0-cycles-log-render/frame_0001.png'
//!   00:01.330  render           | Time: 00:00.12 (Saving: 00:00.11)
//!   00:01.077  image            | ERROR Couldn't create directory for file /x/frame_0001.png: File exists
//!   ```
//!
//! A failed save prints `Error: Render error (<errno text>) cannot save: '<path>'` in every
//! version. The errno text can be stale (the first failure of a run often says
//! `Invalid argument`, 5.0 says `Success` for a permission error); the line printed just before
//! it (`<path>: Permission denied` on stderr in 3.x–4.x, the `image`/`image.write` logger error
//! in 5.x) names the real cause, and is reported as an [`LogLine::Error`] too.
//!
//! The logs these rules were written against are in `tests/data/render-logs/` with the script
//! and commands that captured them.
//!
//! [`LineSplitter`] cuts a byte stream read in arbitrary pieces into lines:
//!
//! ```
//! use blender_session::render::log::{parse_line, LineSplitter, LogLine};
//!
//! let chunks: [&[u8]; 2] = [
//!     b"Fra:1 Mem:9.63M (Peak 9.72M) | Time:00:00.15 | Mem:0.86M, Peak:0.86M | Scene, ViewLa",
//!     b"yer | Sample 4/4\nSaved: '/out/frame_0001.png'\n Time: 00:00.21 (Saving: 00:00.14)\n",
//! ];
//! let mut splitter = LineSplitter::new();
//! let mut parsed = Vec::new();
//! for chunk in chunks {
//!     parsed.extend(splitter.push(chunk).iter().filter_map(|line| parse_line(line)));
//! }
//! parsed.extend(splitter.finish().as_deref().and_then(parse_line));
//!
//! let LogLine::Progress(progress) = &parsed[0] else { panic!("a status line") };
//! assert_eq!(progress.frame, Some(1));
//! assert_eq!(progress.samples, Some((4, 4)));
//! assert_eq!(parsed[1], LogLine::Saved { path: "/out/frame_0001.png".to_owned() });
//! assert!(matches!(parsed[2], LogLine::FrameTime { saving_seconds: Some(_), .. }));
//! ```

use std::borrow::Cow;

/// Lines starting with this belong to rpb's own render driver; [`parse_line`] leaves them alone.
pub const DRIVER_PREFIX: &str = "rpb-render:";

/// The longest line [`LineSplitter`] keeps, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line of Blender's render output, understood.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LogLine {
    /// A status line of the frame being rendered.
    Progress(Progress),
    /// `Saved: '<path>'`: a frame's image was written.
    Saved {
        /// The path as Blender printed it (absolute when the output path was).
        path: String,
    },
    /// `Time: 00:03.45 (Saving: 00:00.12)`: the last frame's render (and save) time.
    FrameTime {
        /// Time of the whole frame, saving included.
        seconds: f64,
        /// Time spent saving; absent when the save failed (4.x, 5.x) or no file was written.
        saving_seconds: Option<f64>,
    },
    /// A frame Blender skipped because its file exists (`skipping existing frame`).
    SkippedExisting {
        /// The existing file, when the line names it.
        path: Option<String>,
    },
    /// A warning, with Blender's words.
    Warning {
        /// The warning without its level word (`Warning:`, `WARNING`).
        message: String,
    },
    /// An error, with Blender's words (render, GPU, save, Python traceback last line...).
    Error {
        /// The error without its level word (`Error:`, `ERROR`); lines that have none, such as
        /// `RuntimeError: …` or `CUDA error: …`, are kept whole.
        message: String,
    },
}

/// A status line of the frame being rendered (`Fra:…`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// The frame number (`Fra:12`, `Fra: 12`).
    pub frame: Option<i64>,
    /// Time since this frame started (`Time:00:01.20`); 3.x–4.x only.
    pub elapsed_seconds: Option<f64>,
    /// Blender's estimate of the time left for this frame (`Remaining:00:10.50`).
    pub remaining_seconds: Option<f64>,
    /// Samples done and total, from `Sample 40/128` (Cycles) or `Rendering 3 / 16 samples`
    /// (EEVEE).
    pub samples: Option<(u32, u32)>,
    /// The last field: `Sample 40/128`, `Finished`, `Building BVH 0%`, `Syncing Cube`...
    pub status: String,
    /// The fields between the scene and the status, when the status has a parent stage:
    /// `Updating Scene BVH` for `… | Updating Scene BVH | Building BVH 0%`.
    pub stage: Option<String>,
    /// The scene and view layer being rendered (`Scene, ViewLayer`); Cycles in 3.x–4.x only.
    pub scene: Option<String>,
}

/// Understands one line of Blender's output; `None` for lines that carry nothing for us.
///
/// Leading and trailing whitespace and terminal colour codes are ignored. Lines starting with
/// [`DRIVER_PREFIX`] are rpb's own and always give `None`.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let line = strip_ansi(line);
    if line.starts_with(DRIVER_PREFIX) {
        return None;
    }
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    match logger_message(line) {
        Some((LoggerLevel::Error, message)) => Some(LogLine::Error {
            message: message.trim().to_owned(),
        }),
        Some((LoggerLevel::Warning, message)) => Some(LogLine::Warning {
            message: message.trim().to_owned(),
        }),
        Some((LoggerLevel::Other, message)) => parse_message(message.trim()),
        None => parse_message(line),
    }
}

/// Blender's durations, `MM:SS.ss` or `HH:MM:SS.ss` (as in `Time:00:01.20`), in seconds.
///
/// `None` unless the text is one to three `:`-separated parts of plain digits with at least
/// one `:`, the last part optionally with a fraction.
pub fn parse_duration(text: &str) -> Option<f64> {
    let mut parts = text.trim().rsplit(':');
    let mut total = parse_plain_decimal(parts.next()?)?;
    let mut unit = 60.0;
    let mut larger_parts = 0;
    for part in parts {
        larger_parts += 1;
        if larger_parts > 2 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        total += part.parse::<f64>().ok()? * unit;
        unit *= 60.0;
    }
    (larger_parts > 0).then_some(total)
}

/// Splits a byte stream into lines across chunk boundaries (`\n`, `\r\n`, lone `\r`), lossy
/// UTF-8, each line capped at 64 KiB ([`MAX_LINE_BYTES`], excess dropped), so a log read in
/// pieces parses as a whole.
///
/// Lines are returned without their terminator. Empty lines are kept.
#[derive(Debug, Default, Clone)]
pub struct LineSplitter {
    /// Bytes of the line in progress (at most [`MAX_LINE_BYTES`]).
    line: Vec<u8>,
    /// The last byte seen was a `\r` that ended a line: a `\n` right after it belongs to it.
    after_cr: bool,
}

impl LineSplitter {
    /// A splitter with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the stream; returns the lines it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            self.after_cr = false;
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.append(&rest[..end]);
            lines.push(self.take_line());
            let terminator = rest[end];
            rest = &rest[end + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.append(rest);
        lines
    }

    /// Ends the stream: returns the last line if it had no terminator.
    pub fn finish(&mut self) -> Option<String> {
        self.after_cr = false;
        (!self.line.is_empty()).then(|| self.take_line())
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES - self.line.len();
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn take_line(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        line
    }
}

/// The level word of a 5.x logger line (`ERROR`, `WARNING`, `FATAL`), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoggerLevel {
    Error,
    Warning,
    Other,
}

/// Splits a Blender 5.x logger line, `00:00.327  render           | MESSAGE` (optionally with a
/// memory column after the time), into its level and message.
fn logger_message(line: &str) -> Option<(LoggerLevel, &str)> {
    let (prefix, message) = line.split_once('|')?;
    if !prefix.ends_with(' ') {
        return None;
    }
    let mut tokens = prefix.split_whitespace();
    parse_duration(tokens.next()?)?;
    let mut category = tokens.next()?;
    if let Some(after_memory) = tokens.next() {
        let memory = category;
        if !(memory.ends_with('M')
            && memory[..memory.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        category = after_memory;
    }
    let category_ok = category
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if tokens.next().is_some() || !category_ok {
        return None;
    }
    let message = message.strip_prefix(' ').unwrap_or(message);
    for (word, level) in [
        ("ERROR ", LoggerLevel::Error),
        ("FATAL ", LoggerLevel::Error),
        ("WARNING ", LoggerLevel::Warning),
    ] {
        if let Some(rest) = message.strip_prefix(word) {
            return Some((level, rest));
        }
    }
    Some((LoggerLevel::Other, message))
}

/// Understands a trimmed message, the whole line in 3.x–4.x or the part after the logger prefix
/// in 5.x.
fn parse_message(text: &str) -> Option<LogLine> {
    if let Some(rest) = text.strip_prefix("Fra:") {
        return Some(parse_progress(rest));
    }
    if let Some(rest) = text.strip_prefix("Saved:") {
        let path = unquote(rest.trim(), '\'');
        return (!path.is_empty()).then(|| LogLine::Saved {
            path: path.to_owned(),
        });
    }
    if let Some(rest) = text.strip_prefix("Time:")
        && let Some(frame_time) = parse_frame_time(rest)
    {
        return Some(frame_time);
    }
    if starts_with_ignore_case(text, "skipping existing frame") {
        let path = text
            .split_once('"')
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(path, _)| path.to_owned())
            .filter(|path| !path.is_empty());
        return Some(LogLine::SkippedExisting { path });
    }
    for word in ["Error:", "ERROR:"] {
        if let Some(rest) = text.strip_prefix(word) {
            let message = rest.trim().to_owned();
            // Printed at exit by the guarded allocator (seen with bpy 4.5 in module mode): a
            // leak report, not a failed render.
            if message.starts_with("Not freed memory blocks") {
                return Some(LogLine::Warning { message });
            }
            return Some(LogLine::Error { message });
        }
    }
    for word in ["Warning:", "WARNING:"] {
        if let Some(rest) = text.strip_prefix(word) {
            return Some(LogLine::Warning {
                message: rest.trim().to_owned(),
            });
        }
    }
    // Headless GPU set-up: 3.4 prints these, then "Managed to successfully fallback to
    // surfaceless EGL rendering!"; 4.5 and 5.0 print them and render fine.
    if text.starts_with("EGL Error") {
        return Some(LogLine::Warning {
            message: text.to_owned(),
        });
    }
    if is_python_exception(text) || is_io_failure(text) || is_crash(text) || mentions_failure(text)
    {
        return Some(LogLine::Error {
            message: text.to_owned(),
        });
    }
    None
}

/// Parses what follows `Fra:` in a status line.
fn parse_progress(rest: &str) -> LogLine {
    let mut fields = rest.split('|').map(str::trim);
    let frame = fields
        .next()
        .and_then(|first| first.split_whitespace().next())
        .and_then(|number| number.parse::<i64>().ok());
    let mut elapsed_seconds = None;
    let mut remaining_seconds = None;
    let mut scene = None;
    let mut after_render_memory = false;
    let mut text: Vec<&str> = Vec::new();
    let fields: Vec<&str> = fields.collect();
    for (index, field) in fields.iter().copied().enumerate() {
        if text.is_empty() {
            if let Some(value) = field.strip_prefix("Time:") {
                elapsed_seconds = parse_duration(value);
                continue;
            }
            if let Some(value) = field.strip_prefix("Remaining:") {
                remaining_seconds = parse_duration(value);
                continue;
            }
            if field.starts_with("Mem:") {
                // 3.x–4.x Cycles: `Mem:0.86M, Peak:0.86M | Scene, ViewLayer | status`.
                after_render_memory = field.contains("Peak");
                continue;
            }
            if after_render_memory && scene.is_none() && index + 1 < fields.len() {
                scene = Some(field.to_owned());
                continue;
            }
        }
        text.push(field);
    }
    let status = text.pop().unwrap_or_default().to_owned();
    let stage = (!text.is_empty()).then(|| text.join(" | "));
    let full_text = match &stage {
        Some(stage) => format!("{stage} | {status}"),
        None => status.clone(),
    };
    if mentions_failure(&full_text) {
        return LogLine::Error { message: full_text };
    }
    let samples = parse_samples(&status).or_else(|| stage.as_deref().and_then(parse_samples));
    LogLine::Progress(Progress {
        frame,
        elapsed_seconds,
        remaining_seconds,
        samples,
        status,
        stage,
        scene,
    })
}

/// Parses what follows `Time:` in a frame time line: `00:00.21 (Saving: 00:00.14)`.
fn parse_frame_time(rest: &str) -> Option<LogLine> {
    let rest = rest.trim();
    let (time, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let seconds = parse_duration(time)?;
    let tail = tail.trim();
    let saving_seconds = if tail.is_empty() {
        None
    } else {
        let inner = tail.strip_prefix("(Saving:")?.strip_suffix(')')?;
        Some(parse_duration(inner)?)
    };
    Some(LogLine::FrameTime {
        seconds,
        saving_seconds,
    })
}

/// Samples done and total from `Sample 40/128` (anywhere in the text, as in
/// `Path Tracing Tile 3/8, Sample 40/128`) or EEVEE's `Rendering 3 / 16 samples`.
fn parse_samples(text: &str) -> Option<(u32, u32)> {
    for (index, _) in text.match_indices("Sample ") {
        if let Some((done, total, _)) = parse_fraction(&text[index + "Sample ".len()..]) {
            return Some((done, total));
        }
    }
    for (index, _) in text.match_indices("Rendering ") {
        if let Some((done, total, rest)) = parse_fraction(&text[index + "Rendering ".len()..])
            && rest.trim_start().starts_with("samples")
        {
            return Some((done, total));
        }
    }
    None
}

/// `12/40`, `12 / 40` at the start of `text`: the two numbers and what follows.
fn parse_fraction(text: &str) -> Option<(u32, u32, &str)> {
    let (done, rest) = split_number(text)?;
    let rest = rest.trim_start().strip_prefix('/')?.trim_start();
    let (total, rest) = split_number(rest)?;
    Some((done, total, rest))
}

fn split_number(text: &str) -> Option<(u32, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number = text[..digits].parse().ok()?;
    Some((number, &text[digits..]))
}

/// Digits with an optional fraction (`01.20`, `5`, `.5`), nothing else (no sign, exponent, `inf`).
fn parse_plain_decimal(text: &str) -> Option<f64> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let dots = text.bytes().filter(|&b| b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != text.len() {
        return None;
    }
    text.parse().ok()
}

/// `'text'` → `text` (the outermost pair, so quotes inside a path survive); anything else as is.
fn unquote(text: &str, quote: char) -> &str {
    text.strip_prefix(quote)
        .and_then(|inner| inner.strip_suffix(quote))
        .unwrap_or(text)
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// The last line of a Python traceback: `RuntimeError: Error: Cannot render, no camera`.
fn is_python_exception(text: &str) -> bool {
    let Some((name, _)) = text.split_once(": ") else {
        return false;
    };
    let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'));
    identifier && (name.ends_with("Error") || name.ends_with("Exception"))
}

/// The C library's report of a failed open, `/out/frame_0001.png: Permission denied` (stderr,
/// 3.x–4.x), or Blender's `imb_savepng: Cannot open file for writing: '…'` (3.x).
fn is_io_failure(text: &str) -> bool {
    const ERRNO_TEXTS: [&str; 9] = [
        "Permission denied",
        "Not a directory",
        "No such file or directory",
        "Read-only file system",
        "No space left on device",
        "Disk quota exceeded",
        "Is a directory",
        "Input/output error",
        "Stale file handle",
    ];
    if text.contains("Cannot open file for writing") {
        return true;
    }
    text.starts_with('/')
        && text
            .rsplit_once(": ")
            .is_some_and(|(_, reason)| ERRNO_TEXTS.contains(&reason))
}

/// Blender's crash handler: `Writing: /tmp/scene.crash.txt`, or the C library's
/// `Segmentation fault`.
fn is_crash(text: &str) -> bool {
    (text.starts_with("Writing: ") && text.ends_with(".crash.txt"))
        || text.starts_with("Segmentation fault")
}

/// GPU and memory failures, wherever they appear (a status field, a line of their own).
fn mentions_failure(text: &str) -> bool {
    const MARKERS: [&str; 9] = [
        "cuda error",
        "cuda_error_",
        "optix error",
        "optix_error",
        "hip error",
        "oneapi error",
        "metal error",
        "out of memory",
        "out of gpu memory",
    ];
    let lower = text.to_ascii_lowercase();
    MARKERS.iter().any(|marker| lower.contains(marker))
}

/// Removes terminal colour sequences (`ESC [ … letter`), which 5.x adds when stdout is a tty.
fn strip_ansi(line: &str) -> Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for next in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&next) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! render_log {
        ($name:literal) => {
            include_str!(concat!("../../tests/data/render-logs/", $name))
        };
    }

    const ALL_LOGS: [(&str, &str); 26] = [
        ("3.4-cannot-save.log", render_log!("3.4-cannot-save.log")),
        ("3.4-cycles-cli.log", render_log!("3.4-cycles-cli.log")),
        ("3.4-cycles.log", render_log!("3.4-cycles.log")),
        ("3.4-eevee.log", render_log!("3.4-eevee.log")),
        ("3.4-no-camera.log", render_log!("3.4-no-camera.log")),
        (
            "3.4-permission-denied.log",
            render_log!("3.4-permission-denied.log"),
        ),
        (
            "3.4-skip-existing.log",
            render_log!("3.4-skip-existing.log"),
        ),
        ("3.4-workbench.log", render_log!("3.4-workbench.log")),
        ("4.5-cannot-save.log", render_log!("4.5-cannot-save.log")),
        ("4.5-cycles.log", render_log!("4.5-cycles.log")),
        ("4.5-eevee.log", render_log!("4.5-eevee.log")),
        ("4.5-no-camera.log", render_log!("4.5-no-camera.log")),
        (
            "4.5-permission-denied.log",
            render_log!("4.5-permission-denied.log"),
        ),
        (
            "4.5-skip-existing.log",
            render_log!("4.5-skip-existing.log"),
        ),
        ("4.5-workbench.log", render_log!("4.5-workbench.log")),
        ("4.5-wrong-engine.log", render_log!("4.5-wrong-engine.log")),
        (
            "5.0-cannot-save-log-render.log",
            render_log!("5.0-cannot-save-log-render.log"),
        ),
        ("5.0-cannot-save.log", render_log!("5.0-cannot-save.log")),
        (
            "5.0-cycles-log-render.log",
            render_log!("5.0-cycles-log-render.log"),
        ),
        ("5.0-cycles.log", render_log!("5.0-cycles.log")),
        (
            "5.0-eevee-log-render.log",
            render_log!("5.0-eevee-log-render.log"),
        ),
        ("5.0-eevee.log", render_log!("5.0-eevee.log")),
        ("5.0-no-camera.log", render_log!("5.0-no-camera.log")),
        (
            "5.0-permission-denied.log",
            render_log!("5.0-permission-denied.log"),
        ),
        (
            "5.0-skip-existing-log-render.log",
            render_log!("5.0-skip-existing-log-render.log"),
        ),
        ("5.0-workbench.log", render_log!("5.0-workbench.log")),
    ];

    fn parse_log(log: &str) -> Vec<LogLine> {
        let mut splitter = LineSplitter::new();
        let mut lines = splitter.push(log.as_bytes());
        lines.extend(splitter.finish());
        lines.iter().filter_map(|line| parse_line(line)).collect()
    }

    fn saved(lines: &[LogLine]) -> Vec<&str> {
        lines
            .iter()
            .filter_map(|line| match line {
                LogLine::Saved { path } => Some(path.as_str()),
                _ => None,
            })
            .collect()
    }

    fn frame_times(lines: &[LogLine]) -> Vec<(f64, Option<f64>)> {
        lines
            .iter()
            .filter_map(|line| match line {
                LogLine::FrameTime {
                    seconds,
                    saving_seconds,
                } => Some((*seconds, *saving_seconds)),
                _ => None,
            })
            .collect()
    }

    fn progress(lines: &[LogLine]) -> Vec<&Progress> {
        lines
            .iter()
            .filter_map(|line| match line {
                LogLine::Progress(progress) => Some(progress),
                _ => None,
            })
            .collect()
    }

    fn errors(lines: &[LogLine]) -> Vec<&str> {
        lines
            .iter()
            .filter_map(|line| match line {
                LogLine::Error { message } => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }

    fn warnings(lines: &[LogLine]) -> Vec<&str> {
        lines
            .iter()
            .filter_map(|line| match line {
                LogLine::Warning { message } => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The highest sample count reached per frame.
    fn samples_reached(lines: &[LogLine]) -> Vec<(i64, (u32, u32))> {
        let mut reached: Vec<(i64, (u32, u32))> = Vec::new();
        for progress in progress(lines) {
            let (Some(frame), Some(samples)) = (progress.frame, progress.samples) else {
                continue;
            };
            match reached.iter_mut().find(|(seen, _)| *seen == frame) {
                Some((_, best)) if samples.0 > best.0 => *best = samples,
                Some(_) => {}
                None => reached.push((frame, samples)),
            }
        }
        reached
    }

    #[test]
    fn cycles_3_4_saves_each_frame_with_its_time_and_reaches_all_samples() {
        let lines = parse_log(render_log!("3.4-cycles.log"));
        assert_eq!(
            saved(&lines),
            [
                "/tmp/rpb-logs/out/3.4-cycles/frame_0001.png",
                "/tmp/rpb-logs/out/3.4-cycles/frame_0002.png",
            ]
        );
        assert_eq!(frame_times(&lines), [(0.21, Some(0.14)), (0.0, Some(0.0))]);
        assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
        assert!(errors(&lines).is_empty() && warnings(&lines).is_empty());

        // Each Saved follows its frame's `Finished` status and precedes its FrameTime.
        let order: Vec<&str> = lines
            .iter()
            .filter_map(|line| match line {
                LogLine::Progress(p) if p.status == "Finished" => Some("finished"),
                LogLine::Saved { .. } => Some("saved"),
                LogLine::FrameTime { .. } => Some("time"),
                _ => None,
            })
            .collect();
        assert_eq!(
            order,
            ["finished", "saved", "time", "finished", "saved", "time"]
        );
    }

    #[test]
    fn cycles_3_4_status_lines_have_their_fields() {
        let lines = parse_log(render_log!("3.4-cycles.log"));
        let all = progress(&lines);
        assert!(
            all.iter()
                .all(|p| p.scene.as_deref() == Some("Scene, ViewLayer"))
        );
        let bvh = all
            .iter()
            .find(|p| p.status == "Building BVH 0%")
            .expect("a BVH status line");
        assert_eq!(bvh.stage.as_deref(), Some("Updating Scene BVH"));
        assert_eq!(bvh.frame, Some(1));
        let first_sample = all
            .iter()
            .find(|p| p.status == "Sample 1/4")
            .expect("a first sample line");
        assert_eq!(first_sample.remaining_seconds, Some(0.0));
        assert_eq!(first_sample.elapsed_seconds, Some(0.06));
        assert_eq!(first_sample.samples, Some((1, 4)));
        let synchronizing = all
            .iter()
            .find(|p| p.status == "Cube")
            .expect("a sync line");
        assert_eq!(synchronizing.stage.as_deref(), Some("Synchronizing object"));
    }

    #[test]
    fn cycles_cli_3_4_saves_the_hash_pattern_paths() {
        let lines = parse_log(render_log!("3.4-cycles-cli.log"));
        assert_eq!(
            saved(&lines),
            [
                "/tmp/rpb-logs/out/3.4-cycles-cli/f_0001.png",
                "/tmp/rpb-logs/out/3.4-cycles-cli/f_0002.png",
            ]
        );
        assert_eq!(frame_times(&lines).len(), 2);
        assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
    }

    #[test]
    fn eevee_samples_are_read_from_rendering_lines() {
        for (log, frames) in [
            (render_log!("3.4-eevee.log"), "3.4-eevee"),
            (render_log!("4.5-eevee.log"), "4.5-eevee"),
        ] {
            let lines = parse_log(log);
            assert_eq!(
                samples_reached(&lines),
                [(1, (4, 4)), (2, (4, 4))],
                "{frames}"
            );
            assert_eq!(
                saved(&lines),
                [
                    format!("/tmp/rpb-logs/out/{frames}/frame_0001.png"),
                    format!("/tmp/rpb-logs/out/{frames}/frame_0002.png"),
                ]
            );
            assert!(errors(&lines).is_empty(), "{frames}: {:?}", errors(&lines));
            assert!(warnings(&lines).iter().all(|w| w.starts_with("EGL Error")));
        }
        let eevee = parse_log(render_log!("3.4-eevee.log"));
        let syncing = progress(&eevee);
        assert_eq!(syncing[0].status, "Syncing Cube");
        assert_eq!(syncing[0].elapsed_seconds, Some(0.35));
        assert_eq!(syncing[0].scene, None);
        assert_eq!(frame_times(&eevee), [(4.31, Some(0.16)), (2.14, Some(0.0))]);
    }

    #[test]
    fn workbench_prints_only_saved_and_times() {
        for (log, name) in [
            (render_log!("3.4-workbench.log"), "3.4-workbench"),
            (render_log!("4.5-workbench.log"), "4.5-workbench"),
        ] {
            let lines = parse_log(log);
            assert!(progress(&lines).is_empty());
            assert_eq!(saved(&lines).len(), 2, "{name}");
            assert_eq!(frame_times(&lines).len(), 2, "{name}");
        }
    }

    #[test]
    fn cycles_4_5_time_line_has_no_leading_space() {
        let lines = parse_log(render_log!("4.5-cycles.log"));
        assert_eq!(frame_times(&lines), [(0.12, Some(0.11)), (0.01, Some(0.0))]);
        assert_eq!(
            saved(&lines),
            [
                "/tmp/rpb-logs/out/4.5-cycles/frame_0001.png",
                "/tmp/rpb-logs/out/4.5-cycles/frame_0002.png",
            ]
        );
        assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
    }

    #[test]
    fn blender_5_0_default_output_has_only_saved_lines() {
        for (log, name) in [
            (render_log!("5.0-cycles.log"), "5.0-cycles"),
            (render_log!("5.0-eevee.log"), "5.0-eevee"),
            (render_log!("5.0-workbench.log"), "5.0-workbench"),
        ] {
            let lines = parse_log(log);
            assert_eq!(
                saved(&lines),
                [
                    format!("/tmp/rpb-logs/out/{name}/frame_0001.png"),
                    format!("/tmp/rpb-logs/out/{name}/frame_0002.png"),
                ]
            );
            assert!(progress(&lines).is_empty() && frame_times(&lines).is_empty());
            assert!(errors(&lines).is_empty());
        }
    }

    #[test]
    fn blender_5_0_with_log_render_has_progress_and_times() {
        let lines = parse_log(render_log!("5.0-cycles-log-render.log"));
        assert_eq!(
            saved(&lines),
            [
                "/tmp/rpb-logs/out/5.0-cycles-log-render/frame_0001.png",
                "/tmp/rpb-logs/out/5.0-cycles-log-render/frame_0002.png",
            ]
        );
        assert_eq!(frame_times(&lines), [(0.12, Some(0.11)), (0.01, Some(0.0))]);
        assert_eq!(samples_reached(&lines), [(1, (4, 4)), (2, (4, 4))]);
        let all = progress(&lines);
        assert!(
            all.iter()
                .all(|p| p.elapsed_seconds.is_none() && p.scene.is_none())
        );
        let first_sample = all
            .iter()
            .find(|p| p.status == "Sample 1/4")
            .expect("sample 1");
        assert_eq!(first_sample.remaining_seconds, Some(0.0));
        assert_eq!(first_sample.frame, Some(1));
        let eevee = parse_log(render_log!("5.0-eevee-log-render.log"));
        assert_eq!(samples_reached(&eevee), [(1, (4, 4)), (2, (4, 4))]);
        assert_eq!(frame_times(&eevee), [(4.38, Some(0.09)), (3.12, Some(0.0))]);
    }

    #[test]
    fn cannot_save_gives_blenders_error_with_the_path_in_every_version() {
        let cases = [
            (
                render_log!("3.4-cannot-save.log"),
                "Render error (Not a directory) cannot save: '/tmp/rpb-logs/notadir/frame_0002.png'",
            ),
            (
                render_log!("4.5-cannot-save.log"),
                "Render error (Not a directory) cannot save: '/tmp/rpb-logs/notadir/frame_0002.png'",
            ),
            (
                render_log!("5.0-cannot-save.log"),
                "Render error (File exists) cannot save: '/tmp/rpb-logs/notadir/frame_0002.png'",
            ),
            (
                render_log!("3.4-permission-denied.log"),
                "Render error (Permission denied) cannot save: '/sys/frame_0002.png'",
            ),
            (
                render_log!("4.5-permission-denied.log"),
                "Render error (Permission denied) cannot save: '/sys/frame_0002.png'",
            ),
            (
                render_log!("5.0-permission-denied.log"),
                "Render error (Success) cannot save: '/sys/frame_0002.png'",
            ),
        ];
        for (log, expected) in cases {
            let lines = parse_log(log);
            assert!(saved(&lines).is_empty(), "{expected}");
            let reported = errors(&lines);
            assert!(reported.contains(&expected), "{expected}: {reported:#?}");
            // The traceback's last line of the raised RuntimeError, in stderr.
            let raised = format!("RuntimeError: Error: {expected}");
            assert!(reported.contains(&raised.as_str()), "{raised}");
        }
    }

    #[test]
    fn cannot_save_reports_the_real_cause_before_the_stale_errno() {
        // The first failure of a run says "Invalid argument"; the line before it says why.
        let lines = parse_log(render_log!("3.4-cannot-save.log"));
        let reported = errors(&lines);
        let real = reported
            .iter()
            .position(|e| *e == "/tmp/rpb-logs/notadir/frame_0001.png: Not a directory")
            .expect("the C library's reason");
        let stale = reported
            .iter()
            .position(|e| e.starts_with("Render error (Invalid argument) cannot save"))
            .expect("Blender's report");
        assert!(real < stale);
        assert!(reported.contains(
            &"imb_savepng: Cannot open file for writing: '/tmp/rpb-logs/notadir/frame_0001.png'"
        ));
        // A failed save still ends with the frame's time (4.5: without the saving part).
        assert_eq!(frame_times(&lines).len(), 2);
        let lines = parse_log(render_log!("4.5-permission-denied.log"));
        assert!(errors(&lines).contains(&"/sys/frame_0001.png: Permission denied"));
        assert!(
            frame_times(&lines)
                .iter()
                .all(|(_, saving)| saving.is_none())
        );
        let lines = parse_log(render_log!("5.0-permission-denied.log"));
        assert!(
            errors(&lines)
                .contains(&"OpenImageIO write failed: Could not open file \"/sys/frame_0001.png\"")
        );
        let lines = parse_log(render_log!("5.0-cannot-save-log-render.log"));
        assert!(errors(&lines).contains(
            &"Couldn't create directory for file /tmp/rpb-logs/notadir/frame_0002.png: File exists"
        ));
        assert_eq!(frame_times(&lines), [(0.09, None), (0.0, None)]);
    }

    #[test]
    fn missing_camera_is_an_error() {
        for log in [
            render_log!("3.4-no-camera.log"),
            render_log!("4.5-no-camera.log"),
            render_log!("5.0-no-camera.log"),
        ] {
            let lines = parse_log(log);
            assert_eq!(
                errors(&lines),
                [
                    "Cannot render, no camera",
                    "RuntimeError: Error: Cannot render, no camera"
                ]
            );
            assert!(saved(&lines).is_empty());
        }
    }

    #[test]
    fn wrong_engine_name_is_a_python_error() {
        let lines = parse_log(render_log!("4.5-wrong-engine.log"));
        assert_eq!(
            errors(&lines),
            [
                "TypeError: bpy_struct: item.attr = val: enum \"BLENDER_EEVEE\" not found in \
                 ('BLENDER_EEVEE_NEXT', 'BLENDER_WORKBENCH', 'CYCLES')"
            ]
        );
    }

    #[test]
    fn skipped_frames_name_their_file() {
        for (log, name) in [
            (render_log!("3.4-skip-existing.log"), "3.4-skip-existing"),
            (render_log!("4.5-skip-existing.log"), "4.5-skip-existing"),
            (
                render_log!("5.0-skip-existing-log-render.log"),
                "5.0-skip-existing-log-render",
            ),
        ] {
            let lines = parse_log(log);
            let skipped: Vec<_> = lines
                .iter()
                .filter_map(|line| match line {
                    LogLine::SkippedExisting { path } => Some(path.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                skipped,
                [Some(format!("/tmp/rpb-logs/out/{name}/frame_0002.png"))]
            );
            assert_eq!(
                saved(&lines),
                [
                    format!("/tmp/rpb-logs/out/{name}/frame_0001.png"),
                    format!("/tmp/rpb-logs/out/{name}/frame_0003.png"),
                ]
            );
        }
    }

    #[test]
    fn capture_script_and_plain_lines_carry_nothing() {
        for (name, log) in ALL_LOGS {
            for line in log.lines() {
                let ignored = line.starts_with("capture:")
                    || line.starts_with("Blender ")
                    || line.starts_with("Read blend:")
                    || line.starts_with("Traceback (most recent call last):")
                    || line.starts_with("  ")
                    || line.starts_with("Managed to successfully fallback")
                    || line.contains("| Rendering frame")
                    || line.contains("| Engine: ")
                    || line.contains("| Start rendering: ");
                if ignored {
                    assert_eq!(parse_line(line), None, "{name}: {line}");
                }
            }
        }
    }

    #[test]
    fn driver_lines_are_left_alone() {
        assert_eq!(parse_line("rpb-render: frame 3 failed: Error: x"), None);
        assert_eq!(parse_line("rpb-render: Saved: '/x.png'"), None);
        assert!(parse_line("Error: rpb-render: not at the start").is_some());
    }

    #[test]
    fn gpu_and_memory_failures_are_errors() {
        // Forms reported by farm managers' parsers and Cycles' sources, not captured here (no
        // GPU on this machine).
        for line in [
            "Error: CUDA error: Out of memory in cuMemAlloc(&device_pointer, size), line 1056",
            "CUDA error: Launch failed in cuCtxSynchronize(), line 1372",
            "Fra:1 Mem:1271.71M (Peak 1271.71M) | Time:00:04.47 | Mem:0.00M, Peak:0.00M | \
             Scene, ViewLayer | System is out of GPU memory",
            "OptiX error OPTIX_ERROR_INVALID_VALUE in optixAccelBuild (device_optix.cpp:1234)",
            "00:00.734  cycles           | ERROR Out of memory",
            "Writing: /tmp/scene.crash.txt",
        ] {
            assert!(
                matches!(parse_line(line), Some(LogLine::Error { .. })),
                "{line}"
            );
        }
        assert_eq!(
            parse_line(
                "Fra:1 Mem:1.00M (Peak 1.00M) | Time:00:04.47 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | System is out of GPU memory"
            ),
            Some(LogLine::Error {
                message: "System is out of GPU memory".to_owned()
            })
        );
        assert_eq!(
            parse_line("Warning: Unable to open '/tex/wood.png'"),
            Some(LogLine::Warning {
                message: "Unable to open '/tex/wood.png'".to_owned()
            })
        );
        assert_eq!(
            parse_line("Error: Not freed memory blocks: 28007, total unfreed memory 6.374859 MB"),
            Some(LogLine::Warning {
                message: "Not freed memory blocks: 28007, total unfreed memory 6.374859 MB"
                    .to_owned()
            })
        );
    }

    #[test]
    fn logger_prefixes_with_hours_memory_and_colour() {
        assert_eq!(
            parse_line("01:02:03.456  render           | Saved: '/o/f_0001.exr'"),
            Some(LogLine::Saved {
                path: "/o/f_0001.exr".to_owned()
            })
        );
        assert_eq!(
            parse_line("00:00.327  12M    render           | Time: 00:03.45 (Saving: 00:00.12)"),
            Some(LogLine::FrameTime {
                seconds: 3.45,
                saving_seconds: Some(0.12)
            })
        );
        assert_eq!(
            parse_line("00:00.327  image.write      | \u{1b}[1;31mERROR\u{1b}[0m Could not open"),
            Some(LogLine::Error {
                message: "Could not open".to_owned()
            })
        );
        assert_eq!(
            parse_line("00:00.327  render           | WARNING Scene has no camera"),
            Some(LogLine::Warning {
                message: "Scene has no camera".to_owned()
            })
        );
        // Not a logger prefix: a progress line's own fields.
        let Some(LogLine::Progress(p)) = parse_line("Fra:-3 | Sample 2/8") else {
            panic!("a progress line");
        };
        assert_eq!((p.frame, p.samples), (Some(-3), Some((2, 8))));
        let Some(LogLine::Progress(p)) = parse_line(
            "Fra:7 Mem:2.00M (Peak 3.00M) | Time:01:00:00.50 | Mem:0.00M, Peak:0.00M | Scene, \
             RenderLayer | Path Tracing Tile 3/8, Sample 40/128",
        ) else {
            panic!("a progress line");
        };
        assert_eq!(p.elapsed_seconds, Some(3600.5));
        assert_eq!(p.samples, Some((40, 128)));
        assert_eq!(p.status, "Path Tracing Tile 3/8, Sample 40/128");
    }

    #[test]
    fn saved_keeps_quotes_inside_the_path() {
        assert_eq!(
            parse_line("Saved: '/out/it's/f_0001.png'"),
            Some(LogLine::Saved {
                path: "/out/it's/f_0001.png".to_owned()
            })
        );
        assert_eq!(parse_line("Saved: ''"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("00:03.45"), Some(3.45));
        assert_eq!(parse_duration(" 01:02:03.50 "), Some(3723.5));
        assert_eq!(parse_duration("10:00"), Some(600.0));
        for bad in [
            "", "3.45", "00:-1", "aa:00.00", "1:2:3:4", "00:1e3", ":00.1", "00:inf",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_line("Time: soon"), None);
        assert_eq!(
            parse_line("Time: 00:00.09"),
            Some(LogLine::FrameTime {
                seconds: 0.09,
                saving_seconds: None
            })
        );
    }

    fn split_whole(bytes: &[u8]) -> Vec<String> {
        let mut splitter = LineSplitter::new();
        let mut lines = splitter.push(bytes);
        lines.extend(splitter.finish());
        lines
    }

    fn split_at(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        let mut start = 0;
        for &cut in cuts {
            lines.extend(splitter.push(&bytes[start..cut]));
            start = cut;
        }
        lines.extend(splitter.push(&bytes[start..]));
        lines.extend(splitter.finish());
        lines
    }

    #[test]
    fn splitter_matches_str_lines_on_every_real_log() {
        for (name, log) in ALL_LOGS {
            let expected: Vec<&str> = log.lines().collect();
            assert_eq!(split_whole(log.as_bytes()), expected, "{name}");
        }
    }

    #[test]
    fn splitter_gives_the_same_lines_at_every_byte_offset() {
        let log = render_log!("5.0-skip-existing-log-render.log").as_bytes();
        let whole = split_whole(log);
        for cut in 0..=log.len() {
            assert_eq!(split_at(log, &[cut]), whole, "cut at {cut}");
        }
        let terminators = b"a\r\nb\rc\n\r\nd\r\re\n\n\xc3\xa9\rf\r";
        let whole = split_whole(terminators);
        assert_eq!(whole, ["a", "b", "c", "", "d", "", "e", "", "é", "f"]);
        for first in 0..=terminators.len() {
            for second in first..=terminators.len() {
                assert_eq!(split_at(terminators, &[first, second]), whole);
            }
        }
        let every_byte: Vec<usize> = (1..terminators.len()).collect();
        assert_eq!(split_at(terminators, &every_byte), whole);
    }

    #[test]
    fn splitter_gives_the_same_lines_at_random_offsets() {
        // xorshift64: deterministic, no dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % u64::try_from(bound).unwrap()).unwrap()
        };
        for (name, log) in ALL_LOGS {
            let bytes = log.as_bytes();
            let whole = split_whole(bytes);
            let parsed_whole: Vec<_> = whole.iter().filter_map(|l| parse_line(l)).collect();
            for _ in 0..50 {
                let mut cuts: Vec<usize> = (0..next(20)).map(|_| next(bytes.len() + 1)).collect();
                cuts.sort_unstable();
                let lines = split_at(bytes, &cuts);
                assert_eq!(lines, whole, "{name} cut at {cuts:?}");
                let parsed: Vec<_> = lines.iter().filter_map(|l| parse_line(l)).collect();
                assert_eq!(parsed, parsed_whole, "{name}");
            }
        }
    }

    #[test]
    fn splitter_caps_lines_and_replaces_bad_utf8() {
        let mut long = vec![b'x'; MAX_LINE_BYTES + 100];
        long.extend_from_slice(b"\nnext\n");
        let lines = split_at(&long, &[10, MAX_LINE_BYTES - 1, MAX_LINE_BYTES + 50]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "next");
        assert_eq!(split_whole(b"a\xffb\n"), ["a\u{fffd}b"]);
        // A multi-byte character cut between chunks survives.
        assert_eq!(split_at("é\n".as_bytes(), &[1]), ["é"]);
        let mut splitter = LineSplitter::new();
        assert!(splitter.push(b"").is_empty());
        assert_eq!(splitter.finish(), None);
        assert_eq!(splitter.push(b"tail"), Vec::<String>::new());
        assert_eq!(splitter.finish().as_deref(), Some("tail"));
    }
}
