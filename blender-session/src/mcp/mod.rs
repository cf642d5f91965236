//! A client for the blender-mcp wire protocol, as served by rpb's Blender addon (and by the
//! upstream blender-mcp addon, for the commands both have).
//!
//! On a pod, two addons serve it: the upstream blender-mcp addon, from the release of the MCP
//! server rpb pins ([`SERVER_REQUIREMENT`]), on the MCP port ([`DEFAULT_PORT`]) for the AI
//! client, and rpb's own addon on the control port ([`DEFAULT_CONTROL_PORT`]) for rpb's commands
//! (save, open, ping, the compute report, renders), so the AI client's persistent connection and
//! rpb's commands never wait on each other. [`McpAddon::Rpb`] puts rpb's addon on the MCP port
//! too, for pods without internet.
//!
//! The protocol is unframed JSON over TCP: the client writes `{"type": ..., "params": {...}}`
//! and reads back one JSON object, `{"status": "success", "result": ...}` or
//! `{"status": "error", "message": ...}`, on a persistent connection, one command at a time.
//! In real use the address is the local end of the SSH tunnel (`127.0.0.1:9877` for rpb's
//! commands).
//!
//! Replies are framed by an incremental scanner that looks at each byte once, so replies of
//! tens of MiB cost one pass plus one parse. Every command has a timeout. After a transport
//! failure (timeout, closed socket, invalid JSON) the connection is dropped, so a late reply can
//! never be read as the answer to the next command; the next command reconnects.
//!
//! ```no_run
//! # async fn demo() -> blender_session::mcp::Result<()> {
//! use std::time::Duration;
//! use blender_session::mcp::Client;
//!
//! let mut blender = Client::builder()
//!     .command_timeout(Duration::from_secs(60))
//!     .connect("127.0.0.1:9877")
//!     .await?;
//! let scene = blender.scene_info().await?;
//! println!("{} objects", scene.object_count);
//! let stdout = blender.execute_code("import bpy; print(len(bpy.data.objects))").await?;
//! println!("Blender printed {stdout}");
//! blender.save_blend("/runpod/projects/demo/scene.blend").await?;
//! # Ok(())
//! # }
//! ```

mod error;
mod framer;
mod types;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

pub use error::{Error, Result};
use framer::{Frame, Framer};
pub use types::{
    AddonInfo, ComputeBackend, ComputeDevice, DeviceEntry, McpPortInfo, MeshStats, ObjectInfo,
    ObjectSummary, OpenedBlend, SavedBlend, SceneInfo, Screenshot,
};

/// The port blender-mcp uses unless told otherwise: the AI client's MCP port.
pub const DEFAULT_PORT: u16 = 9876;

/// The port rpb's addon serves rpb's commands on unless told otherwise.
pub const DEFAULT_CONTROL_PORT: u16 = 9877;

/// The release of the blender-mcp MCP server (`mcp-for-blender` on the Python package index,
/// which `blender-mcp` 2.x installs) that rpb pins in `.mcp.json` and whose addon it installs on
/// pods for the MCP port. Upgrading is this constant, [`UPSTREAM_WHEEL_SHA256`], [`UPSTREAM_PROTOCOL`] (and the
/// same pair in `setup.sh`, which a unit test compares), then a test run.
pub const UPSTREAM_VERSION: &str = "2.2.4";

/// The SHA-256 of `mcp_for_blender-2.2.4-py3-none-any.whl` as the Python package index serves
/// it: the pod's `pip download --require-hashes` refuses anything else.
pub const UPSTREAM_WHEEL_SHA256: &str =
    "c6c3286da735cd44eef43186759da7f19696b0d50991a1b64399280f9744ae14";

/// The addon protocol version the [`UPSTREAM_VERSION`] server expects (its
/// `EXPECTED_ADDON_PROTOCOL_VERSION`), which its bundled addon reports.
pub const UPSTREAM_PROTOCOL: u32 = 15;

/// The pinned MCP server as a pip requirement, so an `.mcp.json` runs this release and not
/// whatever the package index serves today.
pub const SERVER_REQUIREMENT: &str = "mcp-for-blender==2.2.4";

/// The `uvx` arguments that run [`SERVER_REQUIREMENT`]:
/// `uvx --from mcp-for-blender==… mcp-for-blender`.
pub const UVX_ARGS: [&str; 3] = ["--from", SERVER_REQUIREMENT, "mcp-for-blender"];

/// `RPB_MCP_ADDON`: which addon serves the MCP port on the pod.
pub const MCP_ADDON_KEY: &str = "RPB_MCP_ADDON";

/// Which Blender addon serves the MCP port on the pod ([`MCP_ADDON_KEY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum McpAddon {
    /// The upstream blender-mcp addon of [`UPSTREAM_VERSION`], downloaded by the pod's setup
    /// from the Python package index (hash-checked): the protocol the AI client's server speaks.
    #[default]
    Upstream,
    /// rpb's own addon, for pods without internet: the basic tools (scene, objects, code,
    /// viewport) work; the server calls it outdated and refuses its asset tools.
    Rpb,
}

impl McpAddon {
    /// The value in the environment (`upstream`, `rpb`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Rpb => "rpb",
        }
    }
}

impl std::str::FromStr for McpAddon {
    type Err = String;

    fn from_str(value: &str) -> std::result::Result<Self, Self::Err> {
        match value.trim() {
            "upstream" => Ok(Self::Upstream),
            "rpb" => Ok(Self::Rpb),
            other => Err(format!(
                "{MCP_ADDON_KEY} must be `upstream` (the blender-mcp addon of mcp-for-blender \
                 {UPSTREAM_VERSION}) or `rpb` (rpb's own addon, no download), not {other:?}"
            )),
        }
    }
}

/// Default connect timeout: 10 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default per-command timeout: 180 seconds, as the upstream MCP server uses.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Default reply size limit: 512 MiB.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 512 * 1024 * 1024;

const READ_CHUNK: usize = 64 * 1024;

/// Builds a [`Client`]; every setting has a documented default.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    connect_timeout: Duration,
    command_timeout: Duration,
    max_reply_bytes: usize,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

impl ClientBuilder {
    /// Timeout for opening the TCP connection (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout for each command, from sending it to the end of its reply (default
    /// [`DEFAULT_COMMAND_TIMEOUT`]). [`Client::call_with_timeout`] overrides it per command.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Largest reply accepted, in bytes (default [`DEFAULT_MAX_REPLY_BYTES`]).
    pub fn max_reply_bytes(mut self, limit: usize) -> Self {
        self.max_reply_bytes = limit;
        self
    }

    /// Builds the client without connecting: the first command connects.
    pub fn build(self, addr: impl Into<String>) -> Client {
        Client {
            addr: addr.into(),
            config: self,
            connection: None,
        }
    }

    /// Builds the client and opens its connection.
    ///
    /// # Errors
    /// [`Error::Connect`] or [`Error::ConnectTimeout`] when the address does not accept a TCP
    /// connection in time.
    pub async fn connect(self, addr: impl Into<String>) -> Result<Client> {
        let mut client = self.build(addr);
        client.ensure_connected().await?;
        Ok(client)
    }
}

/// A connection to a Blender addon speaking the blender-mcp protocol.
///
/// Commands take `&mut self`: the protocol allows one command in flight per connection. Open
/// several clients for parallel work (the addon serves several connections, and runs all
/// commands one after another on Blender's main thread).
#[derive(Debug)]
pub struct Client {
    addr: String,
    config: ClientBuilder,
    connection: Option<Connection>,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    /// Bytes received and not consumed yet.
    buffer: Vec<u8>,
    framer: Framer,
}

impl Client {
    /// A builder with default settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `addr` (`host:port`) with default settings.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect(addr: impl Into<String>) -> Result<Self> {
        Self::builder().connect(addr).await
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether a connection is open (it is reopened on demand).
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// Sends `command` with `params` (a JSON object, or `null` for none) and returns the
    /// `result` of a success reply, with the default command timeout.
    ///
    /// # Errors
    /// [`Error::Blender`] for the protocol's error reply; the transport errors listed on
    /// [`Error`] otherwise, after which the connection is dropped.
    pub async fn call(&mut self, command: &str, params: Value) -> Result<Value> {
        let command_timeout = self.config.command_timeout;
        self.call_with_timeout(command, params, command_timeout)
            .await
    }

    /// As [`Client::call`], with a timeout for this command only.
    ///
    /// # Errors
    /// As [`Client::call`].
    #[tracing::instrument(level = "debug", skip(self, params), fields(addr = %self.addr))]
    pub async fn call_with_timeout(
        &mut self,
        command: &str,
        params: Value,
        command_timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + command_timeout;
        let params = match params {
            Value::Null => Value::Object(Map::new()),
            other => other,
        };
        let request = json!({ "type": command, "params": params }).to_string();
        let outcome = match timeout_at(deadline, self.exchange(command, request.as_bytes())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Timeout {
                addr: self.addr.clone(),
                command: command.to_owned(),
                timeout: command_timeout,
            }),
        };
        match outcome {
            Ok(reply) => self.interpret(command, reply),
            Err(error) => {
                if error.breaks_connection() {
                    tracing::debug!(%error, "dropping the blender-mcp connection");
                    self.connection = None;
                }
                Err(error)
            }
        }
    }

    /// Closes the connection (the next command reopens one).
    pub async fn close(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            // Best effort: the peer may already be gone, and there is nothing to report.
            let _ = connection.stream.shutdown().await;
        }
    }

    async fn ensure_connected(&mut self) -> Result<&mut Connection> {
        if self.connection.is_none() {
            let connect_timeout = self.config.connect_timeout;
            let stream =
                match timeout(connect_timeout, TcpStream::connect(self.addr.as_str())).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(source)) => {
                        return Err(Error::Connect {
                            addr: self.addr.clone(),
                            source,
                        });
                    }
                    Err(_) => {
                        return Err(Error::ConnectTimeout {
                            addr: self.addr.clone(),
                            timeout: connect_timeout,
                        });
                    }
                };
            // Requests are small and a reply is awaited right after: don't let Nagle hold them.
            // Failing to set it only costs latency.
            let _ = stream.set_nodelay(true);
            self.connection = Some(Connection {
                stream,
                buffer: Vec::new(),
                framer: Framer::default(),
            });
        }
        Ok(self
            .connection
            .as_mut()
            .expect("invariant: connection was just ensured"))
    }

    async fn exchange(&mut self, command: &str, request: &[u8]) -> Result<Value> {
        let addr = self.addr.clone();
        let limit = self.config.max_reply_bytes;
        let connection = self.ensure_connected().await?;
        connection
            .stream
            .write_all(request)
            .await
            .map_err(|source| Error::Send {
                addr: addr.clone(),
                command: command.to_owned(),
                source,
            })?;
        loop {
            let frame = connection
                .framer
                .advance(&connection.buffer)
                .map_err(|bad| Error::InvalidJson {
                    addr: addr.clone(),
                    command: command.to_owned(),
                    offset: bad.offset,
                    source: None,
                })?;
            if let Frame::Complete { start, end } = frame {
                let parsed = serde_json::from_slice::<Value>(&connection.buffer[start..end]);
                connection.buffer.drain(..end);
                connection.framer.reset();
                return parsed.map_err(|source| Error::InvalidJson {
                    addr,
                    command: command.to_owned(),
                    offset: start + source.column().saturating_sub(1),
                    source: Some(source),
                });
            }
            if connection.buffer.len() >= limit {
                return Err(Error::TooLarge {
                    addr,
                    command: command.to_owned(),
                    limit,
                });
            }
            connection
                .buffer
                .reserve(READ_CHUNK.min(limit - connection.buffer.len()).max(1));
            let read = connection
                .stream
                .read_buf(&mut connection.buffer)
                .await
                .map_err(|source| Error::Receive {
                    addr: addr.clone(),
                    command: command.to_owned(),
                    source,
                })?;
            if read == 0 {
                let received = connection
                    .buffer
                    .iter()
                    .filter(|b| !b.is_ascii_whitespace())
                    .count();
                return Err(Error::Closed {
                    addr,
                    command: command.to_owned(),
                    received,
                });
            }
        }
    }

    fn interpret(&mut self, command: &str, reply: Value) -> Result<Value> {
        let malformed = |detail: &str| Error::Malformed {
            addr: self.addr.clone(),
            command: command.to_owned(),
            detail: detail.to_owned(),
        };
        let Value::Object(mut reply) = reply else {
            return Err(malformed("not a JSON object"));
        };
        match reply.get("status").and_then(Value::as_str) {
            Some("success") => Ok(reply.remove("result").unwrap_or(Value::Null)),
            Some("error") => {
                let message = match reply.remove("message") {
                    Some(Value::String(message)) => message,
                    Some(other) => other.to_string(),
                    None => "no message".to_owned(),
                };
                Err(Error::Blender {
                    command: command.to_owned(),
                    message,
                })
            }
            Some(_) => {
                self.connection = None;
                Err(malformed("unknown status"))
            }
            None => {
                self.connection = None;
                Err(malformed("no status field"))
            }
        }
    }

    async fn call_typed<T: DeserializeOwned>(&mut self, command: &str, params: Value) -> Result<T> {
        let result = self.call(command, params).await?;
        serde_json::from_value(result).map_err(|source| Error::UnexpectedResult {
            addr: self.addr.clone(),
            command: command.to_owned(),
            source,
        })
    }

    /// `ping`: checks that the addon answers and Blender's main thread runs commands.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn ping(&mut self) -> Result<()> {
        self.call("ping", Value::Null).await.map(drop)
    }

    /// `get_addon_info`: the addon and protocol versions, Blender's version and the compute
    /// device.
    ///
    /// # Errors
    /// As [`Client::call`], plus [`Error::UnexpectedResult`] (for instance when the peer is the
    /// upstream addon, which lacks this command's fields).
    pub async fn addon_info(&mut self) -> Result<AddonInfo> {
        self.call_typed("get_addon_info", Value::Null).await
    }

    /// `get_scene_info`: the current scene and its objects.
    ///
    /// # Errors
    /// As [`Client::addon_info`].
    pub async fn scene_info(&mut self) -> Result<SceneInfo> {
        self.call_typed("get_scene_info", Value::Null).await
    }

    /// `get_object_info`: details of one object.
    ///
    /// # Errors
    /// As [`Client::addon_info`]; [`Error::Blender`] when there is no such object.
    pub async fn object_info(&mut self, name: &str) -> Result<ObjectInfo> {
        self.call_typed("get_object_info", json!({ "name": name }))
            .await
    }

    /// `execute_code`: runs Python inside Blender and returns what it printed to stdout.
    ///
    /// # Errors
    /// As [`Client::addon_info`]; [`Error::Blender`] carries the Python traceback when the code
    /// raises.
    pub async fn execute_code(&mut self, code: &str) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct Executed {
            result: String,
        }
        let executed: Executed = self
            .call_typed("execute_code", json!({ "code": code }))
            .await?;
        Ok(executed.result)
    }

    /// `save_blend`: saves the open file to `path` on the Blender machine, creating folders.
    ///
    /// # Errors
    /// As [`Client::addon_info`]; [`Error::Blender`] when Blender cannot write there.
    pub async fn save_blend(&mut self, path: &str) -> Result<SavedBlend> {
        self.call_typed("save_blend", json!({ "path": path })).await
    }

    /// `open_blend`: opens the `.blend` file at `path` on the Blender machine.
    ///
    /// # Errors
    /// As [`Client::addon_info`]; [`Error::Blender`] when the file is missing or unreadable.
    pub async fn open_blend(&mut self, path: &str) -> Result<OpenedBlend> {
        self.call_typed("open_blend", json!({ "path": path })).await
    }

    /// `get_viewport_screenshot`: writes a PNG of the 3D viewport to `path` on the Blender
    /// machine, scaled so its longest side is at most `max_size` pixels.
    ///
    /// # Errors
    /// As [`Client::addon_info`]; [`Error::Blender`] when there is no 3D viewport.
    pub async fn viewport_screenshot(&mut self, path: &str, max_size: u32) -> Result<Screenshot> {
        self.call_typed(
            "get_viewport_screenshot",
            json!({ "filepath": path, "max_size": max_size, "format": "png" }),
        )
        .await
    }
}
