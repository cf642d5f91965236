use std::io;
use std::time::Duration;

/// Everything that can go wrong talking to the Blender addon over the blender-mcp protocol.
///
/// Transport failures ([`Error::Connect`], [`Error::Send`], [`Error::Receive`],
/// [`Error::Closed`], [`Error::Timeout`], [`Error::InvalidJson`], [`Error::TooLarge`],
/// [`Error::Malformed`]) drop the connection, and the next command opens a new one. An error
/// *reply* ([`Error::Blender`]) keeps it: Blender answered, it just refused the command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection could not be opened.
    #[error(
        "failed to connect to blender-mcp at {addr}; check that the session is running and the \
         tunnel is up"
    )]
    Connect {
        /// The address as given to the client.
        addr: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The TCP connection was not established within the connect timeout.
    #[error(
        "timed out connecting to blender-mcp at {addr} after {timeout:?}; check that the session \
         is running and the tunnel is up"
    )]
    ConnectTimeout {
        /// The address as given to the client.
        addr: String,
        /// The connect timeout that expired.
        timeout: Duration,
    },
    /// Writing the request failed.
    #[error("failed to send command {command} to blender-mcp at {addr}")]
    Send {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the reply failed.
    #[error("failed to read the reply to {command} from blender-mcp at {addr}")]
    Receive {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection before a complete reply arrived.
    #[error(
        "blender-mcp at {addr} closed the connection before replying to {command} \
         ({received} bytes of a reply received); Blender may have crashed: check its log"
    )]
    Closed {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// How many bytes of the unfinished reply had arrived.
        received: usize,
    },
    /// No complete reply arrived within the command's timeout.
    #[error(
        "blender-mcp at {addr} did not reply to {command} within {timeout:?}; Blender may be busy \
         (the command keeps running there): retry with a longer timeout"
    )]
    Timeout {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The reply is not valid JSON (or does not start like a JSON object).
    #[error("blender-mcp at {addr} sent invalid JSON in reply to {command} (at byte {offset})")]
    InvalidJson {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// Offset in the reply where the problem was seen.
        offset: usize,
        /// The parser's error, when the reply was framed but did not parse.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The reply grew past the client's size limit.
    #[error(
        "the reply to {command} from blender-mcp at {addr} exceeds the limit of {limit} bytes; \
         raise the limit with ClientBuilder::max_reply_bytes"
    )]
    TooLarge {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The reply is JSON but not a blender-mcp reply (no `status`, or an unknown one).
    #[error(
        "blender-mcp at {addr} sent a reply to {command} that is not a blender-mcp reply: {detail}"
    )]
    Malformed {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Blender answered with the protocol's error reply. The message is shown with control
    /// characters other than newlines and tabs escaped, so a broken addon cannot drive the
    /// user's terminal; [`Error::blender_message`] keeps the raw text.
    #[error("blender refused {command}: {}", printable(message))]
    Blender {
        /// The command type.
        command: String,
        /// The `message` of the error reply.
        message: String,
    },
    /// A typed helper could not read the command's result.
    #[error("the result of {command} from blender-mcp at {addr} has an unexpected shape")]
    UnexpectedResult {
        /// The address as given to the client.
        addr: String,
        /// The command type.
        command: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether the command timed out (connecting or waiting for the reply).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::ConnectTimeout { .. })
    }

    /// The message of Blender's error reply, if this is one.
    pub fn blender_message(&self) -> Option<&str> {
        match self {
            Self::Blender { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether the connection was dropped because of this error.
    pub(crate) fn breaks_connection(&self) -> bool {
        !matches!(self, Self::Blender { .. } | Self::UnexpectedResult { .. })
    }
}

/// `text` with control characters (except newline and tab) escaped as `\u{..}`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Result type of the [`mcp`](crate::mcp) module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn blender_messages_cannot_carry_terminal_escapes() {
        let error = Error::Blender {
            command: "execute_code".into(),
            message: "Traceback:\n\tline 1\u{1b}[2J\u{7}bad".into(),
        };
        assert_eq!(
            error.to_string(),
            "blender refused execute_code: Traceback:\n\tline 1\\u{1b}[2J\\u{7}bad"
        );
        assert_eq!(
            error.blender_message(),
            Some("Traceback:\n\tline 1\u{1b}[2J\u{7}bad")
        );
    }

    #[test]
    fn error_sanity() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let error = Error::Connect {
            addr: "127.0.0.1:9876".to_owned(),
            source: refused,
        };
        let message = error.to_string();
        assert!(message.starts_with("failed to connect to blender-mcp at 127.0.0.1:9876"));
        assert!(
            !message.contains("connection refused"),
            "the source is not repeated: {message}"
        );
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("connection refused")
        );

        let timeout = Error::Timeout {
            addr: "a:1".to_owned(),
            command: "execute_code".to_owned(),
            timeout: Duration::from_secs(3),
        };
        assert!(timeout.is_timeout() && timeout.source().is_none());
        assert!(timeout.breaks_connection());

        let refusal = Error::Blender {
            command: "nope".to_owned(),
            message: "Unknown".to_owned(),
        };
        assert_eq!(refusal.blender_message(), Some("Unknown"));
        assert!(!refusal.breaks_connection());

        let wrapped = crate::Error::from(refusal);
        assert_eq!(wrapped.to_string(), "blender refused nope: Unknown");
    }
}
