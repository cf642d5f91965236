//! A connected SSH session and remote exec; file transfer on it is in [`crate::Transfer`]'s
//! module.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connect::{Connector, Endpoint, Link, Options, SessionBuilder};
use crate::error::{Error, Result};
use crate::link::{self, is_eagain};
use crate::output::{ExecOutput, ExitStatus, OutputStream};

/// Default limit of captured output per stream (16 MiB); the rest is streamed but not kept.
pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;
/// Default overall limit for one command (1 hour).
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(3600);

/// One authenticated SSH connection, used for exec and file transfer.
///
/// Operations on one `Session` run one at a time (libssh2 serializes them anyway); open several
/// sessions to run things in parallel. Blocking libssh2 work runs on tokio's blocking pool, never
/// on a runtime worker. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) ssh: ssh2::Session,
    socket: TcpStream,
    pub(crate) endpoint: Endpoint,
    fingerprint: String,
    pub(crate) options: Arc<Options>,
    op_lock: Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Never block in drop: shut the socket so libssh2's cleanup cannot wait on the peer.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.inner.endpoint)
            .field("user", &self.inner.options.user)
            .field("host_key", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SessionBuilder {
    /// Shorthand for `build()?.connect().await`.
    ///
    /// # Errors
    /// As [`SessionBuilder::build`] and [`Connector::connect`].
    pub async fn connect(self) -> Result<Session> {
        self.build()?.connect().await
    }
}

impl Connector {
    /// Opens a new SSH connection to the configured endpoint.
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Handshake`], a host-key error
    /// ([`Error::HostKeyMismatch`], [`Error::HostKeyUnknown`]) or [`Error::Authenticate`].
    pub async fn connect(&self) -> Result<Session> {
        self.connect_to(self.options.endpoint.clone()).await
    }

    /// Opens a new SSH connection to `endpoint` instead of the configured one (for a server that
    /// moved), with the same user, key and host-key policy.
    ///
    /// # Errors
    /// As [`Connector::connect`].
    pub async fn connect_to(&self, endpoint: Endpoint) -> Result<Session> {
        let options = Arc::clone(&self.options);
        let link = tokio::task::spawn_blocking(move || options.connect_blocking(&endpoint))
            .await
            .map_err(Error::Join)??;
        Ok(Session::from_link(link, Arc::clone(&self.options)))
    }
}

impl Session {
    /// Starts configuring a connection.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    pub(crate) fn from_link(link: Link, options: Arc<Options>) -> Self {
        Self {
            inner: Arc::new(Inner {
                ssh: link.session,
                socket: link.socket,
                endpoint: link.endpoint,
                fingerprint: link.fingerprint,
                options,
                op_lock: Mutex::new(()),
            }),
        }
    }

    /// The endpoint this session is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The server's host-key fingerprint (`SHA256:…`).
    pub fn host_key_fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Starts configuring a remote command (run through the user's login shell).
    pub fn command(&self, command: impl Into<String>) -> Command {
        Command {
            session: self.clone(),
            command: command.into(),
            stdin: None,
            timeout: DEFAULT_EXEC_TIMEOUT,
            max_output: DEFAULT_MAX_OUTPUT,
            on_output: None,
            checked: false,
        }
    }

    /// Runs `command` and captures its output. A non-zero exit is returned as data.
    ///
    /// # Errors
    /// As [`Command::output`].
    pub async fn exec(&self, command: impl Into<String>) -> Result<ExecOutput> {
        self.command(command).output().await
    }

    /// Says goodbye to the server and closes the connection.
    ///
    /// # Errors
    /// [`Error::Join`] if the blocking task fails.
    pub async fn close(self) -> Result<()> {
        self.run_blocking(|inner| {
            inner.ssh.set_blocking(true);
            inner.ssh.set_timeout(2000);
            let _ =
                inner
                    .ssh
                    .disconnect(Some(ssh2::DisconnectCode::ByApplication), "closing", None);
            let _ = inner.socket.shutdown(std::net::Shutdown::Both);
            Ok(())
        })
        .await
    }

    /// Runs `f` on the blocking pool, holding this session's operation lock.
    pub(crate) async fn run_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _guard = inner
                .op_lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.ssh.set_blocking(true);
            f(&inner)
        })
        .await
        .map_err(Error::Join)?
    }
}

impl Inner {
    /// Waits until the session socket is ready in the directions libssh2 is blocked on (or any
    /// direction when it does not say), at most `timeout`.
    pub(crate) fn wait_socket(&self, timeout: Duration) {
        link::wait_socket(&self.ssh, &self.socket, timeout);
    }

    /// Runs a command to completion in blocking mode with bounded output and an overall time
    /// limit; for internal helpers (checksums, renames, cleanup).
    pub(crate) fn run_bounded(&self, command: &str, timeout: Duration) -> Result<ExecOutput> {
        let mut sink = None;
        exec_blocking(self, command, None, Some(timeout), 1 << 20, &mut sink)
    }

    /// Shuts the connection's socket down, so that every later libssh2 call on this session
    /// (including the cleanup libssh2 does when channels and SFTP handles are dropped) fails at
    /// once instead of waiting out the I/O timeout on a stalled peer.
    pub(crate) fn shut_down(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

type OutputSink = Box<dyn FnMut(OutputStream, &[u8]) + Send + 'static>;

/// A remote command being configured; run it with [`Command::output`].
#[must_use]
#[expect(clippy::struct_field_names, reason = "`command` is the command line")]
pub struct Command {
    session: Session,
    command: String,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    max_output: usize,
    on_output: Option<OutputSink>,
    checked: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The command line may carry secrets in environment assignments: not shown.
        f.debug_struct("Command")
            .field("endpoint", &self.session.inner.endpoint)
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("max_output", &self.max_output)
            .field("checked", &self.checked)
            .finish_non_exhaustive()
    }
}

impl Command {
    /// Bytes to feed to the command's standard input (then end-of-file), like `ssh … < file`.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Overall time limit. Default: [`DEFAULT_EXEC_TIMEOUT`] (1 hour). On expiry the channel is
    /// closed and [`Error::ExecTimeout`] is returned; the server closes the command's pipes, but a
    /// command that neither reads nor writes may run on until it ends by itself.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keep at most this many bytes of each stream in [`ExecOutput`]. Default:
    /// [`DEFAULT_MAX_OUTPUT`] (16 MiB). Further output is still read (and streamed) but dropped.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Calls `sink` with each chunk of output as it arrives (on a blocking thread).
    pub fn on_output(mut self, sink: impl FnMut(OutputStream, &[u8]) + Send + 'static) -> Self {
        self.on_output = Some(Box::new(sink));
        self
    }

    /// Makes a non-zero exit (or death by signal) an [`Error::ExitStatus`].
    pub fn checked(mut self) -> Self {
        self.checked = true;
        self
    }

    /// Runs the command and waits for it to finish.
    ///
    /// # Errors
    /// [`Error::Exec`] when the channel fails, [`Error::ExecTimeout`] after the timeout,
    /// [`Error::ExitStatus`] for a failed checked command, [`Error::Join`] if the task fails.
    pub async fn output(self) -> Result<ExecOutput> {
        let Self {
            session,
            command,
            stdin,
            timeout,
            max_output,
            mut on_output,
            checked,
        } = self;
        let out = session
            .run_blocking(move |inner| {
                exec_blocking(
                    inner,
                    &command,
                    stdin.as_deref(),
                    Some(timeout),
                    max_output,
                    &mut on_output,
                )
            })
            .await?;
        if checked && !out.status.success() {
            return Err(Error::ExitStatus {
                endpoint: session.inner.endpoint.to_string(),
                status: out.status.clone(),
                stderr_tail: out.stderr_tail(),
            });
        }
        Ok(out)
    }
}

struct Capture {
    data: Vec<u8>,
    truncated: bool,
    limit: usize,
}

impl Capture {
    fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.data.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// Runs one command; the caller holds the session's operation lock.
fn exec_blocking(
    inner: &Inner,
    command: &str,
    stdin: Option<&[u8]>,
    timeout: Option<Duration>,
    max_output: usize,
    sink: &mut Option<OutputSink>,
) -> Result<ExecOutput> {
    let endpoint = inner.endpoint.to_string();
    let exec_err = |source: io::Error| Error::Exec {
        endpoint: endpoint.clone(),
        source,
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let ssh = &inner.ssh;
    ssh.set_blocking(true);
    let mut channel = ssh.channel_session().map_err(|e| exec_err(e.into()))?;
    channel.exec(command).map_err(|e| exec_err(e.into()))?;
    ssh.set_blocking(false);
    let result = pump_exec(inner, &mut channel, stdin, deadline, max_output, sink);
    ssh.set_blocking(true);
    let (stdout, stderr) = match result {
        Ok(v) => v,
        Err(PumpError::Io(e)) => return Err(exec_err(e)),
        Err(PumpError::Timeout) => {
            // Send EOF and CLOSE without waiting for the server's CLOSE (which only comes once
            // the command exits); libssh2 frees the channel with the session.
            ssh.set_blocking(false);
            let until = Instant::now() + Duration::from_millis(500);
            while let Err(e) = channel.close() {
                if !is_eagain(&e) || Instant::now() >= until {
                    break;
                }
                if ssh.block_directions() != ssh2::BlockDirections::Outbound {
                    break;
                }
                inner.wait_socket(Duration::from_millis(50));
            }
            drop(channel);
            ssh.set_blocking(true);
            return Err(Error::ExecTimeout {
                endpoint,
                timeout: timeout.unwrap_or_default(),
            });
        }
    };
    let _ = channel.close();
    channel.wait_close().map_err(|e| exec_err(e.into()))?;
    let code = channel.exit_status().map_err(|e| exec_err(e.into()))?;
    let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
    let status = ExitStatus::new(if signal.is_some() { None } else { Some(code) }, signal);
    Ok(ExecOutput {
        status,
        stdout: stdout.data,
        stderr: stderr.data,
        stdout_truncated: stdout.truncated,
        stderr_truncated: stderr.truncated,
    })
}

enum PumpError {
    Io(io::Error),
    Timeout,
}

/// Non-blocking loop: feed stdin, drain stdout and stderr (both, so neither stalls the window),
/// until the remote end sends EOF.
fn pump_exec(
    inner: &Inner,
    channel: &mut ssh2::Channel,
    stdin: Option<&[u8]>,
    deadline: Option<Instant>,
    max_output: usize,
    sink: &mut Option<OutputSink>,
) -> std::result::Result<(Capture, Capture), PumpError> {
    let mut out = Capture {
        data: Vec::new(),
        truncated: false,
        limit: max_output,
    };
    let mut err = Capture {
        data: Vec::new(),
        truncated: false,
        limit: max_output,
    };
    let input = stdin.unwrap_or_default();
    let mut written = 0;
    let mut eof_sent = false;
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let mut progress = false;
        if written < input.len() {
            let end = input.len().min(written + 256 * 1024);
            match channel.write(&input[written..end]) {
                Ok(n) => {
                    written += n;
                    progress |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The command stopped reading its input: drop the rest, keep its output.
                Err(_) => written = input.len(),
            }
        } else if !eof_sent {
            match channel.send_eof() {
                Ok(()) => {
                    eof_sent = true;
                    progress = true;
                }
                Err(e) if is_eagain(&e) => {}
                Err(_) => eof_sent = true,
            }
        }
        for (stream_id, capture, kind) in [
            (0, &mut out, OutputStream::Stdout),
            (1, &mut err, OutputStream::Stderr),
        ] {
            let mut stream = channel.stream(stream_id);
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        progress = true;
                        capture.push(&buf[..n]);
                        if let Some(sink) = sink.as_mut() {
                            sink(kind, &buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(PumpError::Io(e)),
                }
            }
        }
        if channel.eof() {
            return Ok((out, err));
        }
        if let Some(deadline) = deadline
            && Instant::now() >= deadline
        {
            return Err(PumpError::Timeout);
        }
        if !progress {
            let wait = deadline.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            });
            inner.wait_socket(wait);
        }
    }
}
