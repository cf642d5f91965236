//! A lossless `.env` document: parse, read and update single keys without touching other bytes.
//!
//! This module is pure (no IO). [`Document::parse`] accepts any bytes and never fails: lines it
//! cannot understand are kept verbatim and reported as [`Issue`]s with their line numbers, and
//! the rest of the file stays usable. [`Document::set`] rewrites only the value of one entry (or
//! appends a new line) and [`Document::to_bytes`] gives back every other byte unchanged.
//!
//! # Syntax
//!
//! The accepted syntax follows the usual dotenv conventions:
//!
//! - `KEY=value`, one entry per line; keys are ASCII letters, digits, `_` and `.`, not starting
//!   with a digit. Spaces or tabs may surround the key and the `=`.
//! - An optional `export ` prefix (so the file can be `source`d by a shell).
//! - Blank lines and lines whose first non-blank character is `#` are comments.
//! - Unquoted values run to the end of the line or to a `#` preceded by a space or tab (an
//!   inline comment); surrounding blanks are trimmed and `=` may appear inside the value.
//! - Single-quoted values are literal except for `\'` and `\\`.
//! - Double-quoted values understand `\n`, `\r`, `\t`, `\"`, `\'`, `\\` and `\$`; any other
//!   backslash is kept as written. No variable expansion is done.
//! - `\n` and `\r\n` line endings, a missing final newline and a UTF-8 byte-order mark are all
//!   accepted and preserved.
//! - When a key appears more than once, the last occurrence wins (and an [`Issue`] says so).
//!
//! Values spanning several lines are not supported; write `\n` inside double quotes instead.
//!
//! ```
//! use project_store::dotenv::Document;
//!
//! let mut doc = Document::parse(b"# my pod\r\nexport RUNPOD_POD_ID=old # set by rpb\r\n");
//! assert_eq!(doc.get("RUNPOD_POD_ID"), Some("old"));
//! doc.set("RUNPOD_POD_ID", "abc123")?;
//! doc.set("VNC_PASSWORD", "two words")?;
//! assert_eq!(
//!     doc.to_bytes(),
//!     b"# my pod\r\nexport RUNPOD_POD_ID=abc123 # set by rpb\r\nVNC_PASSWORD='two words'\r\n"
//! );
//! # Ok::<(), project_store::dotenv::InvalidKey>(())
//! ```

use std::fmt;
use std::ops::Range;

const BOM: &str = "\u{feff}";

/// A parsed `.env` file that remembers every byte it was parsed from.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Document {
    lines: Vec<Line>,
}

#[derive(Clone, PartialEq, Eq)]
struct Line {
    /// The whole physical line, terminator included.
    raw: Vec<u8>,
    kind: LineKind,
}

#[derive(Clone, PartialEq, Eq)]
enum LineKind {
    Blank,
    Comment,
    Entry(EntryData),
    Malformed(IssueKind),
}

#[derive(Clone, PartialEq, Eq)]
struct EntryData {
    key: String,
    value: String,
    /// Byte range of the value as written (quotes included), within `raw`.
    value_span: Range<usize>,
}

/// One `KEY=value` entry of a [`Document`].
///
/// Its `Debug` output shows the key and line but never the value, which may be a secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    line: usize,
    key: &'a str,
    value: &'a str,
}

impl<'a> Entry<'a> {
    /// The 1-based line number.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The key, e.g. `RUNPOD_POD_ID`.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The decoded value (quotes removed, escapes applied).
    pub fn value(&self) -> &'a str {
        self.value
    }
}

impl fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("line", &self.line)
            .field("key", &self.key)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

/// A problem found on one line of a `.env` file. The line is kept verbatim and otherwise
/// ignored; the rest of the file stays usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: IssueKind,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

/// What is wrong with a `.env` line. Messages never quote values, which may be secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueKind {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line does not start with a valid key.
    InvalidKey,
    /// The line has no `=` after its first word, so it is not `KEY=VALUE`. The word is not
    /// kept: a token pasted alone on a line looks just like a key.
    MissingEquals,
    /// A quoted value has no closing quote on the same line.
    UnterminatedQuote {
        /// The key whose value is unterminated.
        key: String,
        /// The opening quote character.
        quote: char,
    },
    /// Something other than a comment follows a closing quote.
    TextAfterQuote {
        /// The key whose value is followed by stray text.
        key: String,
    },
    /// The key was already defined on an earlier line; this later line wins.
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// The 1-based line of the previous definition.
        previous_line: usize,
    },
}

impl fmt::Display for IssueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("not valid UTF-8; save the file as UTF-8"),
            Self::InvalidKey => f.write_str(
                "expected KEY=VALUE with a key made of letters, digits, `_` or `.`; \
                 start the line with `#` to make it a comment",
            ),
            Self::MissingEquals => f.write_str(
                "not KEY=VALUE; if it is a token, put it after RUNPOD_API_KEY=, \
                 or start the line with `#` to make it a comment",
            ),
            Self::UnterminatedQuote { key, quote } => write!(
                f,
                "the value of {key} has no closing {quote}; values cannot span lines, \
                 write \\n inside double quotes instead"
            ),
            Self::TextAfterQuote { key } => write!(
                f,
                "unexpected text after the closing quote of {key}; \
                 put a space before an inline `#` comment"
            ),
            Self::DuplicateKey { key, previous_line } => write!(
                f,
                "{key} is also set on line {previous_line}; this later line wins, \
                 remove one of them"
            ),
        }
    }
}

/// The key given to [`Document::set`] is not a valid `.env` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{key:?} is not a valid .env key; use ASCII letters, digits, `_` and `.`, \
     not starting with a digit"
)]
pub struct InvalidKey {
    /// The rejected key.
    pub key: String,
}

/// Whether `key` is a valid `.env` key: `[A-Za-z_][A-Za-z0-9_.]*`.
pub fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(is_key_byte)
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl Document {
    /// Parses `.env` content. Never fails: see [`Document::issues`] for lines that were not
    /// understood.
    pub fn parse(bytes: &[u8]) -> Self {
        let lines = bytes
            .split_inclusive(|&b| b == b'\n')
            .enumerate()
            .map(|(index, raw)| Line {
                raw: raw.to_vec(),
                kind: classify(raw, index == 0),
            })
            .collect();
        Self { lines }
    }

    /// The exact bytes of the document, including every change made with [`Document::set`].
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lines
            .iter()
            .flat_map(|line| line.raw.iter().copied())
            .collect()
    }

    /// The number of physical lines.
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    /// The effective value of `key` (its last definition), decoded.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries()
            .filter(|entry| entry.key == key)
            .last()
            .map(|entry| entry.value)
    }

    /// Every well-formed entry, in file order (duplicates included).
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(index, line)| match &line.kind {
                LineKind::Entry(data) => Some(Entry {
                    line: index + 1,
                    key: &data.key,
                    value: &data.value,
                }),
                _ => None,
            })
    }

    /// The effective entry for each key (the last definition), in order of first appearance.
    pub fn effective_entries(&self) -> Vec<Entry<'_>> {
        let mut out: Vec<Entry<'_>> = Vec::new();
        for entry in self.entries() {
            if let Some(existing) = out.iter_mut().find(|e| e.key == entry.key) {
                *existing = entry;
            } else {
                out.push(entry);
            }
        }
        out
    }

    /// Lines that were not understood, and keys defined more than once.
    pub fn issues(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (index, line) in self.lines.iter().enumerate() {
            let number = index + 1;
            match &line.kind {
                LineKind::Malformed(kind) => {
                    issues.push(Issue {
                        line: number,
                        kind: kind.clone(),
                    });
                }
                LineKind::Entry(data) => {
                    if let Some(slot) = seen.iter_mut().find(|(key, _)| *key == data.key) {
                        issues.push(Issue {
                            line: number,
                            kind: IssueKind::DuplicateKey {
                                key: data.key.clone(),
                                previous_line: slot.1,
                            },
                        });
                        slot.1 = number;
                    } else {
                        seen.push((&data.key, number));
                    }
                }
                LineKind::Blank | LineKind::Comment => {}
            }
        }
        issues
    }

    /// Sets `key` to `value`.
    ///
    /// If the key is defined, only the value of its effective (last) definition is rewritten:
    /// indentation, `export`, spacing around `=`, an inline comment and the line ending are
    /// kept. Otherwise a `KEY=value` line is appended, using the file's line ending (a missing
    /// final newline is added first). The value is quoted and escaped only when it needs to be.
    ///
    /// # Errors
    ///
    /// [`InvalidKey`] if `key` is not a valid `.env` key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), InvalidKey> {
        if !is_valid_key(key) {
            return Err(InvalidKey {
                key: key.to_owned(),
            });
        }
        let target = self
            .lines
            .iter()
            .rposition(|line| matches!(&line.kind, LineKind::Entry(data) if data.key == key));
        if let Some(index) = target {
            let line = &mut self.lines[index];
            let LineKind::Entry(data) = &line.kind else {
                unreachable!("invariant: rposition matched an entry line");
            };
            let suffix_starts_blank = line
                .raw
                .get(data.value_span.end)
                .is_none_or(|&b| is_blank(b) || is_eol(b));
            let encoded = encode_value(value, !suffix_starts_blank);
            let mut raw = line.raw[..data.value_span.start].to_vec();
            raw.extend_from_slice(encoded.as_bytes());
            raw.extend_from_slice(&line.raw[data.value_span.end..]);
            line.kind = classify(&raw, index == 0);
            line.raw = raw;
        } else {
            let eol: &[u8] = if self.lines.iter().any(|l| l.raw.ends_with(b"\r\n")) {
                b"\r\n"
            } else {
                b"\n"
            };
            if let Some(last) = self.lines.last_mut()
                && !last.raw.ends_with(b"\n")
            {
                // A lone trailing `\r` already counts as the end of the line.
                if last.raw.ends_with(b"\r") {
                    last.raw.push(b'\n');
                } else {
                    last.raw.extend_from_slice(eol);
                }
            }
            let mut raw = format!("{key}={}", encode_value(value, false)).into_bytes();
            raw.extend_from_slice(eol);
            let first = self.lines.is_empty();
            self.lines.push(Line {
                kind: classify(&raw, first),
                raw,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show keys only.
        f.debug_struct("Document")
            .field("lines", &self.lines.len())
            .field("keys", &self.entries().map(|e| e.key).collect::<Vec<_>>())
            .finish()
    }
}

fn is_eol(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// The line without its terminator (`\n`, `\r\n`, or a lone trailing `\r`).
fn content_len(raw: &[u8]) -> usize {
    let mut len = raw.len();
    if raw[..len].ends_with(b"\n") {
        len -= 1;
    }
    if raw[..len].ends_with(b"\r") {
        len -= 1;
    }
    len
}

fn classify(raw: &[u8], first: bool) -> LineKind {
    let content = &raw[..content_len(raw)];
    let Ok(text) = std::str::from_utf8(content) else {
        return LineKind::Malformed(IssueKind::NotUtf8);
    };
    let offset = if first && text.starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    match parse_line(&text[offset..]) {
        Parsed::Blank => LineKind::Blank,
        Parsed::Comment => LineKind::Comment,
        Parsed::Malformed(kind) => LineKind::Malformed(kind),
        Parsed::Entry { key, value, span } => LineKind::Entry(EntryData {
            key,
            value,
            value_span: span.start + offset..span.end + offset,
        }),
    }
}

enum Parsed {
    Blank,
    Comment,
    Entry {
        key: String,
        value: String,
        span: Range<usize>,
    },
    Malformed(IssueKind),
}

fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && is_blank(bytes[at]) {
        at += 1;
    }
    at
}

fn parse_line(text: &str) -> Parsed {
    let bytes = text.as_bytes();
    let mut at = skip_blanks(bytes, 0);
    if at == bytes.len() {
        return Parsed::Blank;
    }
    if bytes[at] == b'#' {
        return Parsed::Comment;
    }
    if let Some(rest) = bytes[at..].strip_prefix(b"export")
        && rest.first().is_some_and(|&b| is_blank(b))
    {
        at = skip_blanks(bytes, at + "export".len());
    }
    if !bytes[at..].contains(&b'=') {
        // No `=` at all: maybe a pasted secret, whatever its characters.
        return Parsed::Malformed(IssueKind::MissingEquals);
    }
    let key_start = at;
    if !bytes
        .get(at)
        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
    {
        return Parsed::Malformed(IssueKind::InvalidKey);
    }
    while at < bytes.len() && is_key_byte(bytes[at]) {
        at += 1;
    }
    let key = text[key_start..at].to_owned();
    let key_end = at;
    at = skip_blanks(bytes, at);
    if bytes.get(at) != Some(&b'=') {
        // `D-E=1`: a character that cannot be part of a key; `KEY value=1`: text before `=`.
        return if at == key_end && at < bytes.len() {
            Parsed::Malformed(IssueKind::InvalidKey)
        } else {
            Parsed::Malformed(IssueKind::MissingEquals)
        };
    }
    let after_equals = at + 1;
    let start = skip_blanks(bytes, after_equals);
    let (value, end) = if let Some(&quote @ (b'"' | b'\'')) = bytes.get(start) {
        let Some(found) = parse_quoted(text, start, quote) else {
            return Parsed::Malformed(IssueKind::UnterminatedQuote {
                key,
                quote: char::from(quote),
            });
        };
        found
    } else {
        let mut stop = bytes.len();
        for index in start..bytes.len() {
            if bytes[index] == b'#' && index > after_equals && is_blank(bytes[index - 1]) {
                stop = index;
                break;
            }
        }
        let value = text[start..stop].trim_end_matches([' ', '\t']);
        (value.to_owned(), start + value.len())
    };
    // After a quoted value only blanks and an optional comment may follow.
    let rest = skip_blanks(bytes, end);
    if rest < bytes.len() && bytes[rest] != b'#' {
        return Parsed::Malformed(IssueKind::TextAfterQuote { key });
    }
    Parsed::Entry {
        key,
        value,
        span: start..end,
    }
}

/// Parses a quoted value starting at `start` (the opening quote). Returns the decoded value and
/// the index just past the closing quote.
fn parse_quoted(text: &str, start: usize, quote: u8) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((index, c)) = chars.next() {
        if c == char::from(quote) {
            return Some((value, start + 1 + index + 1));
        }
        if c != '\\' {
            value.push(c);
            continue;
        }
        let (_, next) = chars.next()?;
        let decoded = match (quote, next) {
            (b'"', 'n') => Some('\n'),
            (b'"', 'r') => Some('\r'),
            (b'"', 't') => Some('\t'),
            (b'\'', '\'' | '\\') | (b'"', '"' | '\'' | '\\' | '$') => Some(next),
            _ => None,
        };
        if let Some(decoded) = decoded {
            value.push(decoded);
        } else {
            value.push('\\');
            value.push(next);
        }
    }
    None
}

fn is_plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.:/@+=,%~".contains(&b)
}

/// Encodes `value` so that [`parse_line`] decodes it back exactly. Plain values stay
/// unquoted, values without `'`, `\` or line breaks use single quotes (literal in every dotenv
/// dialect and in shells), anything else uses escaped double quotes.
fn encode_value(value: &str, force_quotes: bool) -> String {
    if !force_quotes && !value.is_empty() && value.bytes().all(is_plain_byte) {
        return value.to_owned();
    }
    if !value.contains(['\'', '\\', '\n', '\r']) {
        return format!("'{value}'");
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '$' => out.push_str("\\$"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(line: &str) -> Option<String> {
        Document::parse(line.as_bytes())
            .entries()
            .next()
            .map(|e| e.value().to_owned())
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(value("A=b").as_deref(), Some("b"));
        assert_eq!(value("  export   A = b c  ").as_deref(), Some("b c"));
        assert_eq!(value("A=b=c==").as_deref(), Some("b=c=="));
        assert_eq!(value("A=b # comment").as_deref(), Some("b"));
        assert_eq!(value("A=b#not-comment").as_deref(), Some("b#not-comment"));
        assert_eq!(value("A=#x").as_deref(), Some("#x"));
        assert_eq!(value("A= # only a comment").as_deref(), Some(""));
        assert_eq!(value("A=").as_deref(), Some(""));
        assert_eq!(value("A='x # y' # c").as_deref(), Some("x # y"));
        assert_eq!(value(r"A='it\'s \\ \n'").as_deref(), Some(r"it's \ \n"));
        assert_eq!(
            value(r#"A="a\nb\t\"c\" \$HOME \q""#).as_deref(),
            Some("a\nb\t\"c\" $HOME \\q")
        );
        assert_eq!(value("A=b\r\n").as_deref(), Some("b"));
        assert_eq!(value("\u{feff}A=b").as_deref(), Some("b"));
        assert_eq!(value("export=1").as_deref(), Some("1"));
        assert_eq!(value("a.b_c=1").as_deref(), Some("1"));
    }

    #[test]
    fn reports_malformed_lines_and_keeps_the_rest() {
        let doc = Document::parse(
            b"GOOD=1\nno equals here\nB=\"open\n=x\nC='x' y\nGOOD=2\n\xff\xfe=1\nD-E=1\n",
        );
        assert_eq!(doc.get("GOOD"), Some("2"));
        let issues = doc.issues();
        let kinds: Vec<(usize, &IssueKind)> = issues.iter().map(|i| (i.line, &i.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (2, &IssueKind::MissingEquals),
                (
                    3,
                    &IssueKind::UnterminatedQuote {
                        key: "B".into(),
                        quote: '"'
                    }
                ),
                (4, &IssueKind::InvalidKey),
                (5, &IssueKind::TextAfterQuote { key: "C".into() }),
                (
                    6,
                    &IssueKind::DuplicateKey {
                        key: "GOOD".into(),
                        previous_line: 1
                    }
                ),
                (7, &IssueKind::NotUtf8),
                (8, &IssueKind::InvalidKey),
            ]
        );
    }

    #[test]
    fn a_token_alone_on_a_line_is_never_quoted_back() {
        let token = "rpa_3F9QX7ZK2LMN8PV4";
        for line in [
            token.to_owned(),
            format!("  {token}  "),
            format!("export {token}"),
            format!("{token} # my key"),
            format!("{token} x=1"),
            "rpa-3F9Q.X7ZK/2LMN+8PV4".to_owned(),
        ] {
            let doc = Document::parse(format!("A=1\n{line}\n").as_bytes());
            let issues = doc.issues();
            assert_eq!(issues.len(), 1, "{line}");
            assert_eq!(issues[0].line, 2);
            assert_eq!(issues[0].kind, IssueKind::MissingEquals, "{line}");
            let shown = format!("{} {:?}", issues[0], issues[0]);
            assert!(
                !shown.contains("3F9Q") && !shown.contains("export"),
                "{shown}"
            );
            assert!(shown.starts_with("line 2: not KEY=VALUE"), "{shown}");
            assert!(shown.contains("RUNPOD_API_KEY="), "{shown}");
        }
    }

    #[test]
    fn set_rewrites_only_the_value() {
        let mut doc = Document::parse(b"# c\n  export A = 'old' # keep\r\nB=1");
        doc.set("A", "new").unwrap();
        assert_eq!(doc.to_bytes(), b"# c\n  export A = new # keep\r\nB=1");
        doc.set("C", "x y").unwrap();
        assert_eq!(
            doc.to_bytes(),
            b"# c\n  export A = new # keep\r\nB=1\r\nC='x y'\r\n"
        );
    }

    #[test]
    fn set_quotes_when_the_suffix_would_change_meaning() {
        let mut doc = Document::parse(b"A=\"x\"#c\n");
        doc.set("A", "y").unwrap();
        assert_eq!(doc.to_bytes(), b"A='y'#c\n");
        assert_eq!(doc.get("A"), Some("y"));
        doc.set("A", "").unwrap();
        assert_eq!(doc.get("A"), Some(""));
    }

    #[test]
    fn set_updates_the_last_duplicate() {
        let mut doc = Document::parse(b"A=1\nA=2\n");
        doc.set("A", "3").unwrap();
        assert_eq!(doc.to_bytes(), b"A=1\nA=3\n");
    }

    #[test]
    fn set_on_empty_document() {
        let mut doc = Document::parse(b"");
        doc.set("A", "it's $x\n").unwrap();
        assert_eq!(doc.to_bytes(), b"A=\"it's \\$x\\n\"\n");
        assert_eq!(doc.get("A"), Some("it's $x\n"));
    }

    #[test]
    fn set_rejects_bad_keys() {
        let mut doc = Document::default();
        for key in ["", "1A", "A B", "A=B", "A\n", "é"] {
            assert_eq!(doc.set(key, "x"), Err(InvalidKey { key: key.into() }));
        }
        assert!(doc.to_bytes().is_empty());
    }

    #[test]
    fn debug_never_shows_values() {
        let doc = Document::parse(b"RUNPOD_API_KEY=rpa_secret\n");
        let shown = format!("{doc:?} {:?}", doc.entries().next().unwrap());
        assert!(!shown.contains("rpa_secret"), "{shown}");
        assert!(shown.contains("RUNPOD_API_KEY"));
    }
}
