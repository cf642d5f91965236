//! A small, incremental parser for `text/event-stream` (server-sent events), as used by the pod
//! log endpoint. Pure: bytes in, events out; the network side lives in `pods.rs`.

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    /// The `event:` field; empty means the default type `message`.
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
    /// The `id:` field, if any.
    pub(crate) id: Option<String>,
}

/// Accumulates bytes and yields complete events. Lines may end in `\n`, `\r\n` or `\r`.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buffer: Vec<u8>,
    pending: SseEvent,
    has_data: bool,
    /// Upper bound of one unterminated line, so a hostile stream cannot grow memory unbounded.
    max_line: usize,
}

/// The stream sent a line longer than the parser's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong(pub(crate) usize);

impl SseParser {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            max_line,
            ..Self::default()
        }
    }

    /// Feeds a chunk and returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let Some(end) = self.buffer.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.buffer.len() > self.max_line {
                    return Err(LineTooLong(self.max_line));
                }
                return Ok(events);
            };
            // A lone '\r' at the very end may be the first half of "\r\n": wait for more.
            if self.buffer[end] == b'\r' && end + 1 == self.buffer.len() {
                return Ok(events);
            }
            let skip = if self.buffer[end] == b'\r' && self.buffer.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let line: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                events.push(event);
            }
        }
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if !self.has_data {
                self.pending = SseEvent::default();
                return None;
            }
            self.has_data = false;
            return Some(std::mem::take(&mut self.pending));
        }
        if line.starts_with(':') {
            return None; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.pending.event),
            "id" => self.pending.id = Some(value.to_owned()),
            _ => {} // "retry" and unknown fields are ignored
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut parser = SseParser::new(1024);
        let mut events = parser.push(b": keep-alive\n\ndata: {\"a\":").expect("ok");
        assert!(events.is_empty());
        events.extend(parser.push(b"1}\r").expect("ok"));
        events.extend(
            parser
                .push(b"\n\r\nevent: end\ndata: x\ndata: y\nid: 7\n\n")
                .expect("ok"),
        );
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: String::new(),
                    data: "{\"a\":1}".into(),
                    id: None
                },
                SseEvent {
                    event: "end".into(),
                    data: "x\ny".into(),
                    id: Some("7".into())
                },
            ]
        );
    }

    #[test]
    fn bounds_unterminated_lines() {
        let mut parser = SseParser::new(8);
        assert_eq!(parser.push(b"data: 0123456789"), Err(LineTooLong(8)));
    }
}
