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
mod tests;
