//! Connection settings and the blocking connect (TCP, handshake, host key, auth).

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};
use crate::hostkey::{self, HostKeyPolicy};
use crate::link::{self, millis};

/// Where an SSH server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint at `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = Error;

    /// Parses `host:port` or `[v6addr]:port`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config {
            reason: format!("endpoint {s:?} is not HOST:PORT"),
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self::new(host, port))
    }
}

/// Default TCP connect and handshake timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout for one blocking SSH operation (libssh2's session timeout).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default SSH keepalive interval.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Default number of unanswered keepalive intervals before a peer is declared dead.
pub const DEFAULT_KEEPALIVE_MAX: u32 = 3;
/// Cipher preference: AES-GCM first (hardware-accelerated almost everywhere), then the rest.
const CIPHERS: &str = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,\
                       chacha20-poly1305@openssh.com,aes192-ctr";
/// Host-key algorithms we accept, strongest first; SHA-1 `ssh-rsa` is not among them.
const HOST_KEY_ALGORITHMS: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,\
                                   ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256";

/// Builds a [`Connector`], from which sessions and tunnels are opened.
///
/// Endpoint, user, identity file and host-key policy are required; there is deliberately no
/// default host-key policy.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SessionBuilder {
    endpoint: Option<Endpoint>,
    user: Option<String>,
    identity: Option<PathBuf>,
    passphrase: Option<SecretString>,
    host_key_policy: Option<HostKeyPolicy>,
    connect_timeout: Option<Duration>,
    io_timeout: Option<Duration>,
    keepalive_interval: Option<Duration>,
    keepalive_max: Option<u32>,
    ciphers: Option<String>,
}

impl SessionBuilder {
    /// The server to connect to.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// The user to log in as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The private key file (OpenSSH or PEM format; ed25519, ECDSA or RSA with SHA-2).
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity = Some(path.into());
        self
    }

    /// The private key's passphrase. Never logged.
    pub fn passphrase(mut self, passphrase: SecretString) -> Self {
        self.passphrase = Some(passphrase);
        self
    }

    /// How the server's host key is checked. Required.
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.host_key_policy = Some(policy);
        self
    }

    /// TCP connect, handshake and authentication timeout. Default:
    /// [`DEFAULT_CONNECT_TIMEOUT`] (10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Timeout of one blocking SSH operation (a read, a write, opening a channel). Default:
    /// [`DEFAULT_IO_TIMEOUT`] (30 s).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = Some(timeout);
        self
    }

    /// Keepalive interval: how often an idle connection is probed. Default:
    /// [`DEFAULT_KEEPALIVE_INTERVAL`] (15 s). Values below 2 s are raised to 2 s (libssh2's
    /// resolution).
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = Some(interval);
        self
    }

    /// How many keepalive intervals without any answer mark the peer as dead (tunnels
    /// reconnect then). Default: [`DEFAULT_KEEPALIVE_MAX`] (3), like OpenSSH's
    /// `ServerAliveCountMax`.
    pub fn keepalive_max(mut self, count: u32) -> Self {
        self.keepalive_max = Some(count);
        self
    }

    /// Cipher preference, comma-separated in OpenSSH names (both directions). Default: AES-GCM
    /// first (hardware-accelerated almost everywhere), then AES-CTR, then ChaCha20-Poly1305.
    pub fn ciphers(mut self, preference: impl Into<String>) -> Self {
        self.ciphers = Some(preference.into());
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::Config`] when the endpoint, user, identity file or host-key policy is missing.
    pub fn build(self) -> Result<Connector> {
        let missing = |what: &str| Error::Config {
            reason: format!("no {what} given; set it on the session builder"),
        };
        let endpoint = self.endpoint.ok_or_else(|| missing("endpoint"))?;
        let user = self
            .user
            .filter(|u| !u.is_empty())
            .ok_or_else(|| missing("user"))?;
        let identity = self.identity.ok_or_else(|| missing("identity file"))?;
        let host_key_policy = self
            .host_key_policy
            .ok_or_else(|| missing("host key policy"))?;
        let keepalive_interval = self
            .keepalive_interval
            .unwrap_or(DEFAULT_KEEPALIVE_INTERVAL)
            .max(Duration::from_secs(2));
        Ok(Connector {
            options: Arc::new(Options {
                endpoint,
                user,
                identity,
                passphrase: self.passphrase,
                host_key_policy,
                connect_timeout: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                io_timeout: self.io_timeout.unwrap_or(DEFAULT_IO_TIMEOUT),
                keepalive_interval,
                keepalive_max: self.keepalive_max.unwrap_or(DEFAULT_KEEPALIVE_MAX).max(1),
                ciphers: self.ciphers.unwrap_or_else(|| CIPHERS.to_owned()),
            }),
        })
    }
}

/// Validated connection settings: opens [`crate::Session`]s and [`crate::Tunnel`]s. Cheap to
/// clone.
// `connect`, `connect_to` (in `session`) and `tunnel` (in `tunnel`) are defined next to what
// they return, so that this module depends on neither.
#[derive(Clone, Debug)]
pub struct Connector {
    pub(crate) options: Arc<Options>,
}

impl Connector {
    /// The configured endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.options.endpoint
    }
}

/// The settings a [`Connector`] holds.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) endpoint: Endpoint,
    pub(crate) user: String,
    pub(crate) identity: PathBuf,
    pub(crate) passphrase: Option<SecretString>,
    pub(crate) host_key_policy: HostKeyPolicy,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_max: u32,
    pub(crate) ciphers: String,
}

/// An authenticated SSH connection, in blocking mode with `io_timeout` set.
pub(crate) struct Link {
    pub(crate) session: ssh2::Session,
    /// A second handle on the same socket, for `poll` and for shutting it down.
    pub(crate) socket: TcpStream,
    pub(crate) endpoint: Endpoint,
    pub(crate) fingerprint: String,
}

impl Link {
    /// Closes politely (bounded by a short timeout), then shuts the socket down.
    pub(crate) fn disconnect(self) {
        self.session.set_blocking(true);
        self.session.set_timeout(2000);
        let _ = self
            .session
            .disconnect(Some(ssh2::DisconnectCode::ByApplication), "closing", None);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl Options {
    /// Connects, verifies the host key and authenticates. Blocking; run it off the runtime.
    pub(crate) fn connect_blocking(&self, endpoint: &Endpoint) -> Result<Link> {
        let name = endpoint.to_string();
        let connect_err = |source| Error::Connect {
            endpoint: name.clone(),
            source,
        };
        let addrs = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(connect_err)?;
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| connect_err(last))?;
        link::tune_socket(&stream, self.keepalive_interval, self.keepalive_max)
            .map_err(connect_err)?;
        let socket = stream.try_clone().map_err(connect_err)?;

        let handshake_err = |source| Error::Handshake {
            endpoint: name.clone(),
            source,
        };
        let mut session = ssh2::Session::new().map_err(handshake_err)?;
        session.set_timeout(millis(self.connect_timeout));
        session
            .method_pref(ssh2::MethodType::HostKey, HOST_KEY_ALGORITHMS)
            .map_err(handshake_err)?;
        session
            .method_pref(ssh2::MethodType::CryptCs, &self.ciphers)
            .map_err(handshake_err)?;
        session
            .method_pref(ssh2::MethodType::CryptSc, &self.ciphers)
            .map_err(handshake_err)?;
        session.set_tcp_stream(stream);
        session.handshake().map_err(handshake_err)?;

        let (key, _) = session.host_key().ok_or_else(|| Error::NoHostKey {
            endpoint: name.clone(),
        })?;
        let fingerprint = crate::keyblob::fingerprint(key);
        hostkey::verify(&self.host_key_policy, &endpoint.host, endpoint.port, key)?;

        if let Err(source) = std::fs::metadata(&self.identity) {
            return Err(Error::LocalIo {
                action: "read identity file",
                path: self.identity.clone(),
                source,
            });
        }
        session
            .userauth_pubkey_file(
                &self.user,
                None,
                &self.identity,
                self.passphrase.as_ref().map(ExposeSecret::expose_secret),
            )
            .map_err(|source| Error::Authenticate {
                user: self.user.clone(),
                endpoint: name.clone(),
                key: self.identity.clone(),
                source,
            })?;
        session.set_timeout(millis(self.io_timeout));
        session.set_keepalive(
            true,
            u32::try_from(self.keepalive_interval.as_secs()).unwrap_or(15),
        );
        tracing::debug!(endpoint = %name, %fingerprint, "ssh session established");
        Ok(Link {
            session,
            socket,
            endpoint: endpoint.clone(),
            fingerprint,
        })
    }

    /// How long a connection may go without any sign of life before it is declared dead.
    pub(crate) fn dead_after(&self) -> Duration {
        self.keepalive_interval * (self.keepalive_max + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print() {
        let e: Endpoint = "example.com:2222".parse().unwrap();
        assert_eq!(e, Endpoint::new("example.com", 2222));
        assert_eq!(e.to_string(), "example.com:2222");
        let v6: Endpoint = "[::1]:22".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:22");
        assert!("nope".parse::<Endpoint>().is_err());
        assert!(":22".parse::<Endpoint>().is_err());
    }

    #[test]
    fn builder_requires_a_host_key_policy() {
        let err = SessionBuilder::default()
            .endpoint(Endpoint::new("h", 22))
            .user("u")
            .identity_file("/k")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("host key policy"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_passphrase() {
        let b = SessionBuilder::default().passphrase(SecretString::from("hunter2"));
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
