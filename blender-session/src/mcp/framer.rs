//! Finds where one JSON object ends in a byte stream, without parsing it.
//!
//! The blender-mcp protocol has no framing: a reply is one JSON object, and the reader must
//! notice when it is complete. Upstream clients re-run a JSON parser over the whole buffer after
//! every chunk, which is quadratic in the reply size. [`Framer`] instead scans each byte once,
//! tracking string, escape and nesting state, and reports the end of the first top-level object;
//! only that complete slice is then handed to `serde_json`.

/// What the framer found in the bytes fed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// No complete object yet: read more bytes.
    Incomplete,
    /// A complete object spans `start..end` of the buffer.
    Complete { start: usize, end: usize },
}

/// The stream holds something other than a JSON object where one should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotAnObject {
    /// Offset of the offending byte in the buffer.
    pub(crate) offset: usize,
}

/// Incremental scanner over a growing buffer; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// Bytes of the buffer already scanned.
    scanned: usize,
    /// Offset of the object's opening brace, once seen.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Framer {
    /// Scans the bytes of `buf` not seen yet. `buf` must only grow between calls (until
    /// [`Framer::reset`]), so each byte is looked at once.
    pub(crate) fn advance(&mut self, buf: &[u8]) -> Result<Frame, NotAnObject> {
        while self.scanned < buf.len() {
            let offset = self.scanned;
            let byte = buf[offset];
            self.scanned += 1;
            let Some(start) = self.start else {
                match byte {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' => {
                        self.start = Some(offset);
                        self.depth = 1;
                        continue;
                    }
                    _ => return Err(NotAnObject { offset }),
                }
            };
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Frame::Complete {
                            start,
                            end: offset + 1,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(Frame::Incomplete)
    }

    /// Forgets all state, for a buffer whose consumed prefix has been removed.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all_at_once(input: &str) -> Result<Frame, NotAnObject> {
        Framer::default().advance(input.as_bytes())
    }

    #[test]
    fn finds_a_whole_object() {
        let input = r#"  {"status": "success", "result": {"a": [1, {"b": "}"}]}} trailing"#;
        let Frame::Complete { start, end } = frame_all_at_once(input).unwrap() else {
            panic!("expected a complete frame");
        };
        assert_eq!(start, 2);
        assert_eq!(&input[end..], " trailing");
    }

    #[test]
    fn braces_and_escaped_quotes_inside_strings_do_not_count() {
        let input = r#"{"s": "a \"quoted\" {brace} [and] \\"}"#;
        assert_eq!(
            frame_all_at_once(input).unwrap(),
            Frame::Complete {
                start: 0,
                end: input.len()
            }
        );
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_answer() {
        let input = r#"{"k": "v\\\"x", "n": [1, 2, {"x": null}], "u": "é✓"}"#.as_bytes();
        let mut framer = Framer::default();
        for len in 1..input.len() {
            assert_eq!(
                framer.advance(&input[..len]).unwrap(),
                Frame::Incomplete,
                "at {len}"
            );
        }
        assert_eq!(
            framer.advance(input).unwrap(),
            Frame::Complete {
                start: 0,
                end: input.len()
            }
        );
    }

    #[test]
    fn rejects_data_that_is_not_an_object() {
        assert_eq!(
            frame_all_at_once("\n HTTP/1.1"),
            Err(NotAnObject { offset: 2 })
        );
        assert_eq!(frame_all_at_once("[1]"), Err(NotAnObject { offset: 0 }));
    }

    #[test]
    fn reset_starts_over() {
        let mut framer = Framer::default();
        assert!(matches!(
            framer.advance(b"{}").unwrap(),
            Frame::Complete { .. }
        ));
        framer.reset();
        assert_eq!(framer.advance(b" {").unwrap(), Frame::Incomplete);
    }
}
