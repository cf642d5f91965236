//! SSH host keys made here: an Ed25519 key pair in OpenSSH's formats, so a server can be
//! given its host key and the client can pin it before the first connection (no trust on first
//! use).

use std::fmt;
use std::io::Read as _;

use ed25519_dalek::SigningKey;
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::{Error, Result};
use crate::keyblob::{base64, fingerprint};

const KEY_TYPE: &str = "ssh-ed25519";
/// Where the key's randomness comes from (the kernel's CSPRNG).
const RANDOM_SOURCE: &str = "/dev/urandom";

/// An Ed25519 host key pair: the private key in OpenSSH's `openssh-key-v1` format (what
/// `ssh-keygen -t ed25519 -N ''` writes, and what `sshd`'s `HostKey` reads) and the public key
/// as one `authorized_keys`-style line.
///
/// ```
/// let pair = pod_tunnel::HostKeyPair::generate_ed25519("rpb host key").unwrap();
/// assert!(pair.public_key().starts_with("ssh-ed25519 "));
/// assert!(pair.fingerprint().starts_with("SHA256:"));
/// // `Debug` shows the public half only.
/// assert!(!format!("{pair:?}").contains("PRIVATE"));
/// ```
#[derive(Clone)]
pub struct HostKeyPair {
    private: SecretString,
    public: String,
    blob: Vec<u8>,
}

impl HostKeyPair {
    /// Makes a new Ed25519 key pair from the system's random source; `comment` ends the public
    /// key line (no newline in it).
    ///
    /// # Errors
    ///
    /// [`Error::LocalIo`] when the random source cannot be read.
    pub fn generate_ed25519(comment: &str) -> Result<Self> {
        let mut seed = zeroize::Zeroizing::new([0_u8; 32]);
        std::fs::File::open(RANDOM_SOURCE)
            .and_then(|mut random| random.read_exact(seed.as_mut()))
            .map_err(|source| Error::LocalIo {
                action: "read random bytes for a host key from",
                path: RANDOM_SOURCE.into(),
                source,
            })?;
        let checkint = u32::from_le_bytes([seed[0], seed[5], seed[10], seed[15]]);
        Ok(Self::from_seed(&seed, checkint, comment))
    }

    fn from_seed(seed: &[u8; 32], checkint: u32, comment: &str) -> Self {
        let comment: String = comment.chars().filter(|c| !c.is_control()).collect();
        let signing = SigningKey::from_bytes(seed);
        let public = signing.verifying_key().to_bytes();
        let blob = public_blob(&public);

        // The private section (see OpenSSH's PROTOCOL.key): two equal check integers, the key,
        // the comment, then padding to the cipher's block size (8 for "none").
        let mut private = zeroize::Zeroizing::new(Vec::with_capacity(160));
        private.extend_from_slice(&checkint.to_be_bytes());
        private.extend_from_slice(&checkint.to_be_bytes());
        put_string(&mut private, KEY_TYPE.as_bytes());
        put_string(&mut private, &public);
        let mut secret = zeroize::Zeroizing::new(Vec::with_capacity(64));
        secret.extend_from_slice(seed);
        secret.extend_from_slice(&public);
        put_string(&mut private, &secret);
        put_string(&mut private, comment.as_bytes());
        let mut pad = 1_u8;
        while private.len() % 8 != 0 {
            private.push(pad);
            pad += 1;
        }

        let mut file = zeroize::Zeroizing::new(Vec::with_capacity(320));
        file.extend_from_slice(b"openssh-key-v1\0");
        put_string(&mut file, b"none");
        put_string(&mut file, b"none");
        put_string(&mut file, b"");
        file.extend_from_slice(&1_u32.to_be_bytes());
        put_string(&mut file, &blob);
        put_string(&mut file, &private);

        let encoded = zeroize::Zeroizing::new(base64(&file, true));
        let mut pem = String::with_capacity(encoded.len() + 80);
        pem.push_str("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for line in encoded.as_bytes().chunks(70) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");

        let mut public_line = format!("{KEY_TYPE} {}", base64(&blob, true));
        if !comment.is_empty() {
            public_line.push(' ');
            public_line.push_str(&comment);
        }
        Self {
            private: SecretString::from(pem),
            public: public_line,
            blob,
        }
    }

    /// The private key file's text (`-----BEGIN OPENSSH PRIVATE KEY-----` …), to install as the
    /// server's `HostKey` with mode 0600. Never log it.
    pub fn private_key(&self) -> &SecretString {
        &self.private
    }

    /// The public key line (`ssh-ed25519 AAAA… comment`), for `HostKey.pub` and for pinning.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

impl fmt::Debug for HostKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKeyPair")
            .field("public", &self.public)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl PartialEq for HostKeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public && self.private.expose_secret() == other.private.expose_secret()
    }
}

impl Eq for HostKeyPair {}

fn public_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(51);
    put_string(&mut blob, KEY_TYPE.as_bytes());
    put_string(&mut blob, public);
    blob
}

/// An SSH `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyblob::decode_base64;
    use crate::known_hosts::parse_public_key;

    #[test]
    fn the_public_line_parses_back_to_the_same_fingerprint() {
        let pair = HostKeyPair::from_seed(&[7; 32], 0x0102_0304, "pod\nx");
        assert!(
            pair.public_key().ends_with(" podx"),
            "{}",
            pair.public_key()
        );
        let (kind, blob) = parse_public_key(pair.public_key()).expect("parses");
        assert_eq!(kind, "ssh-ed25519");
        assert_eq!(fingerprint(&blob), pair.fingerprint());
    }

    #[test]
    fn the_private_file_has_openssh_s_layout() {
        let pair = HostKeyPair::from_seed(&[9; 32], 42, "c");
        let pem = pair.private_key().expose_secret();
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert!(
            pem.lines()
                .all(|line| line.len() <= 70 || line.starts_with("-----"))
        );
        let bytes = decode_base64(&body).expect("base64");
        assert!(bytes.starts_with(b"openssh-key-v1\0"));
        let mut fields = Reader(&bytes[15..]);
        assert_eq!(fields.string(), b"none", "cipher");
        assert_eq!(fields.string(), b"none", "kdf");
        assert_eq!(fields.string(), b"", "kdf options");
        assert_eq!(fields.u32(), 1, "one key");
        assert_eq!(
            fields.string(),
            public_blob(&SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes())
        );
        let private = fields.string();
        assert!(fields.0.is_empty(), "nothing after the private section");
        assert_eq!(private.len() % 8, 0, "padded to the block size");
        let mut section = Reader(private);
        assert_eq!(section.u32(), 42);
        assert_eq!(section.u32(), 42);
        assert_eq!(section.string(), b"ssh-ed25519");
        let seed_and_public: Vec<u8> = [9_u8; 32]
            .iter()
            .copied()
            .chain(SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes())
            .collect();
        assert!(
            bytes
                .windows(seed_and_public.len())
                .any(|window| window == seed_and_public.as_slice())
        );
        assert!(!format!("{pair:?}").contains(&body[..20]));
    }

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn u32(&mut self) -> u32 {
            let (head, rest) = self.0.split_at(4);
            self.0 = rest;
            u32::from_be_bytes(head.try_into().unwrap())
        }

        fn string(&mut self) -> &'a [u8] {
            let len = self.u32() as usize;
            let (head, rest) = self.0.split_at(len);
            self.0 = rest;
            head
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = HostKeyPair::generate_ed25519("a").unwrap();
        let b = HostKeyPair::generate_ed25519("a").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a, b);
    }
}
