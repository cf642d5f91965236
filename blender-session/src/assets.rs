//! rpb's own pod-side files, embedded in the crate, with a content version.
//!
//! | file | runs | does |
//! |---|---|---|
//! | `setup.sh` | once per pod, and again when [`version`] changes | installs Blender, the addon and the scripts into the pod root, caches the session's `.deb` packages, persists the SSH host keys, records the assets version |
//! | `session.sh` | every start (`start`, `stop`, `status`) | installs missing packages from the cache, starts Xvfb, x11vnc, websockify/noVNC and Blender with the addon, waits for each, prints a JSON report |
//! | `boot-hook.sh` | at container start, before sshd | restores the persisted SSH host keys, then runs the image's own start command |
//! | `rpb_mcp.py` | inside Blender | the blender-mcp–compatible socket server and the Cycles device setup |
//! | `rpb_render.py` | inside `blender -b`, per render job | renders the job's frames that are not done yet, verifies each image, records it (see [`crate::render`]) |
//! | `rpb_novnc_origin.py` | inside websockify, per WebSocket | admits only a page on a loopback origin (`http://127.0.0.1:PORT`, `localhost`, `[::1]`; or the exact origins in `RPB_NOVNC_ORIGINS`), so another web page in the user's browser cannot reach the desktop |
//!
//! The environment variables each script reads are listed in the crate's README.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let written = blender_session::assets::write_to(dir.path())?;
//! assert!(written.iter().any(|path| path.ends_with("setup.sh")));
//! assert_eq!(
//!     std::fs::read_to_string(dir.path().join(blender_session::assets::VERSION_FILE))?.trim(),
//!     blender_session::assets::version(),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Asset {
    /// File name, as laid out by [`write_to`] and expected by the scripts.
    pub name: &'static str,
    /// The file's contents.
    pub contents: &'static str,
    /// Unix permission bits to give it.
    pub mode: u32,
}

/// The first-time (and upgrade) setup script.
pub const SETUP_SCRIPT: Asset = Asset {
    name: "setup.sh",
    contents: include_str!("../assets/setup.sh"),
    mode: 0o755,
};

/// The per-start session script (`start`, `stop`, `status`).
pub const SESSION_SCRIPT: Asset = Asset {
    name: "session.sh",
    contents: include_str!("../assets/session.sh"),
    mode: 0o755,
};

/// The container-start hook that restores SSH host keys.
pub const BOOT_HOOK: Asset = Asset {
    name: "boot-hook.sh",
    contents: include_str!("../assets/boot-hook.sh"),
    mode: 0o755,
};

/// The Blender addon (a single-file Python module named `rpb_mcp`).
pub const ADDON: Asset = Asset {
    name: "rpb_mcp.py",
    contents: include_str!("../assets/rpb_mcp.py"),
    mode: 0o644,
};

/// The render driver, run by `blender -b FILE --python rpb_render.py -- JOB_DIR` for render
/// jobs (see [`crate::render`]).
pub const RENDER_DRIVER: Asset = Asset {
    name: "rpb_render.py",
    contents: include_str!("../assets/rpb_render.py"),
    mode: 0o644,
};

/// The websockify auth plugin (module `rpb_novnc_origin`, class `LoopbackOrigin`) that checks
/// a WebSocket's `Origin`; `session.sh` starts websockify with it.
pub const NOVNC_ORIGIN_PLUGIN: Asset = Asset {
    name: "rpb_novnc_origin.py",
    contents: include_str!("../assets/rpb_novnc_origin.py"),
    mode: 0o644,
};

const ALL: [Asset; 6] = [
    SETUP_SCRIPT,
    SESSION_SCRIPT,
    BOOT_HOOK,
    ADDON,
    RENDER_DRIVER,
    NOVNC_ORIGIN_PLUGIN,
];

/// Name of the file, next to the assets, that holds [`version`].
pub const VERSION_FILE: &str = "assets-version";

/// Name of the file in `RPB_HOME` where the setup script records, last, the stamp it was given
/// (`RPB_SETUP_STAMP`): the assets version and a digest of what else it installed.
pub const SETUP_STAMP_FILE: &str = "setup-stamp";

/// All embedded files.
pub fn all() -> &'static [Asset] {
    &ALL
}

/// FNV-1a, 64 bit: a stable content fingerprint (not a security measure), computed at compile
/// time so the version is the same on every build of the same files.
const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        index += 1;
    }
    hash
}

const fn assets_hash(assets: &[Asset]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < assets.len() {
        let asset = assets[index];
        // Name, a separator, the length and the contents: renaming or moving bytes between
        // files changes the hash too.
        hash = fnv1a(hash, asset.name.as_bytes());
        hash = fnv1a(hash, &[0]);
        hash = fnv1a(hash, &(asset.contents.len() as u64).to_le_bytes());
        hash = fnv1a(hash, asset.contents.as_bytes());
        hash = fnv1a(hash, &asset.mode.to_le_bytes());
        index += 1;
    }
    hash
}

const VERSION_HEX: [u8; 16] = {
    let hash = assets_hash(&ALL);
    let digits = b"0123456789abcdef";
    let mut out = [0u8; 16];
    let mut index = 0;
    while index < 16 {
        out[index] = digits[((hash >> (60 - 4 * index)) & 0xf) as usize];
        index += 1;
    }
    out
};

const VERSION: &str = match std::str::from_utf8(&VERSION_HEX) {
    Ok(version) => version,
    Err(_) => panic!("invariant: hex digits are ASCII"),
};

/// The assets version: 16 hex digits of a hash over every embedded file's name, mode and
/// contents. The setup script records it on the pod (`<RPB_HOME>/assets-version`), so a caller
/// compares it with this value to know whether setup must run again.
pub fn version() -> &'static str {
    VERSION
}

/// Writes every asset, and [`VERSION_FILE`], into `dir` (created if missing), each file
/// atomically (a temporary file renamed into place) with its mode. Returns the paths written.
///
/// # Errors
/// [`Error::WriteAsset`] naming the file that could not be written.
pub fn write_to(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    fs::create_dir_all(dir).map_err(|source| Error::WriteAsset {
        path: dir.to_path_buf(),
        source,
    })?;
    let version_line = format!("{VERSION}\n");
    let files = ALL
        .iter()
        .map(|asset| (asset.name, asset.contents, asset.mode))
        .chain([(VERSION_FILE, version_line.as_str(), 0o644)]);
    let mut written = Vec::with_capacity(ALL.len() + 1);
    for (name, contents, mode) in files {
        let path = dir.join(name);
        write_atomically(&path, contents.as_bytes(), mode).map_err(|source| Error::WriteAsset {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `bytes` to `path` through a new temporary file beside it, created with `mode` (so a
/// private file is never readable by others, even for a moment; a file planted at the
/// temporary name is removed, not followed), synced and renamed into place: `path` then holds
/// the old contents or the new, never a part.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".rpb-{}.tmp", std::process::id()));
    let temporary = PathBuf::from(name);
    let _ = fs::remove_file(&temporary);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        // The umask may have taken bits away: the mode asked for, exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        // Best effort: don't leave the partial file behind; the original error matters more.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// The machine-readable report `session.sh start` (and `status`) prints as its last line.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SessionReport {
    /// `ready` when every part runs and answers, `degraded` when some do, `stopped` when none.
    #[serde(rename = "rpb_session")]
    pub state: SessionState,
    /// The assets version recorded by the setup script (`unknown` if it never ran).
    pub assets_version: String,
    /// The X display number.
    pub display: u32,
    /// The ports, all on 127.0.0.1.
    pub ports: SessionPorts,
    /// Who serves the MCP port: `mcp-for-blender <version> sha256:<hash>` (the upstream addon
    /// setup installed) or `rpb`.
    #[serde(default)]
    pub mcp_addon: String,
    /// PIDs of the session's processes (0 for a part that is not running).
    pub pids: SessionPids,
    /// Which parts this run (re)started; empty when everything was already running.
    pub started: Vec<String>,
    /// Which parts are not running (`blender-addon` when Blender runs but rpb's addon does not
    /// answer, `mcp-port` when nothing serves the MCP port).
    #[serde(default)]
    pub down: Vec<String>,
    /// What the addon reports (`get_addon_info`), when Blender answers.
    pub addon: Option<crate::mcp::AddonInfo>,
    /// Folder of the session's logs.
    pub log_dir: String,
}

/// Overall state in a [`SessionReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SessionState {
    /// Every part runs and answers.
    Ready,
    /// Some parts run.
    Degraded,
    /// Nothing runs.
    Stopped,
    /// A state this version does not know.
    #[serde(other)]
    Unknown,
}

/// Ports in a [`SessionReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SessionPorts {
    /// The MCP socket (the upstream blender-mcp addon's, or rpb's addon's with
    /// `RPB_MCP_ADDON=rpb`).
    pub mcp: u16,
    /// rpb's addon's command socket.
    #[serde(default)]
    pub control: u16,
    /// x11vnc's RFB port.
    pub vnc: u16,
    /// websockify serving noVNC.
    pub novnc: u16,
}

/// PIDs in a [`SessionReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SessionPids {
    /// Xvfb.
    pub xvfb: u32,
    /// x11vnc.
    pub x11vnc: u32,
    /// websockify.
    pub websockify: u32,
    /// Blender.
    pub blender: u32,
}

impl SessionReport {
    /// Finds and parses the report line (the last line starting with `{"rpb_session"`) in the
    /// script's standard output.
    ///
    /// # Errors
    /// [`Error::ParseReport`] when there is no such line or it does not parse.
    pub fn parse(stdout: &str) -> Result<Self> {
        let line = stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| line.starts_with("{\"rpb_session\""))
            .ok_or(Error::ParseReport { source: None })?;
        serde_json::from_str(line).map_err(|source| Error::ParseReport {
            source: Some(source),
        })
    }
}

/// The summary `setup.sh` prints as its last line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SetupReport {
    /// The assets version now recorded on the pod.
    pub assets_version: String,
    /// The Blender executable sessions will run.
    pub blender_bin: String,
    /// Who serves the MCP port: `mcp-for-blender <version> sha256:<hash>` (the upstream addon
    /// it installed) or `rpb`.
    #[serde(default)]
    pub mcp_addon: String,
    /// How many `.deb` files the package cache holds.
    pub cached_debs: usize,
    /// `persisted` (saved now), `kept` (saved earlier) or `none` (no host keys found).
    pub host_keys: String,
    /// Files and folders under the rpb home that this run changed; empty on a no-op re-run.
    pub changed: Vec<String>,
}

impl SetupReport {
    /// Finds and parses the summary line (the last line starting with `{"rpb_setup"`) in the
    /// script's standard output.
    ///
    /// # Errors
    /// [`Error::ParseReport`] when there is no such line or it does not parse.
    pub fn parse(stdout: &str) -> Result<Self> {
        let line = stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| line.starts_with("{\"rpb_setup\""))
            .ok_or(Error::ParseReport { source: None })?;
        serde_json::from_str(line).map_err(|source| Error::ParseReport {
            source: Some(source),
        })
    }
}

/// The pod environment variable that carries the pod's SSH host private key (base64 of the
/// OpenSSH key file, one line) from [`crate::Orchestrator::create`] to the start command.
pub const HOST_KEY_ENV: &str = "RPB_SSH_HOST_KEY";
/// The pod environment variable with the matching public key line (`ssh-ed25519 AAAA…`): what
/// a machine that never connected to the pod pins, read from the API.
pub const HOST_PUBLIC_KEY_ENV: &str = "RPB_SSH_HOST_PUBLIC_KEY";

/// The pod start command. First it installs the host key rpb made for the pod
/// ([`HOST_KEY_ENV`], when set) into `$RPB_SSH_DIR` (default `/etc/ssh`), before any sshd
/// starts, so the very first SSH contact is already verified against the pin; the key goes
/// from the environment through standard input only, never into an argument. Then the boot
/// hook when the volume holds it, else the image's own `/start.sh` (the very first boot,
/// before setup ran). A failure to install the key is reported and the boot goes on: the
/// client then refuses the unpinned key, which is safe.
pub fn boot_command(pod_root: &str) -> String {
    boot_command_with_fallback(pod_root, None)
}

/// The marker by which a pod's start command is known to run rpb's boot hook.
pub const BOOT_HOOK_MARKER: &str = "/rpb/bin/boot-hook.sh";

/// [`boot_command`] ending in `fallback` (a start command line, as RunPod's `args` hold it)
/// instead of the image's `/start.sh`: what `rpb adopt` gives a pod whose own start command
/// must go on running after the hook (and when the volume lost the hook).
pub fn boot_command_with_fallback(pod_root: &str, fallback: Option<&str>) -> String {
    let hook = pod_tunnel::shell::quote(&format!(
        "{}{BOOT_HOOK_MARKER}",
        pod_root.trim_end_matches('/')
    ));
    let fallback = match fallback.map(str::trim).filter(|line| !line.is_empty()) {
        Some(line) => format!("bash -c {}", pod_tunnel::shell::quote(line)),
        None => "/start.sh".to_owned(),
    };
    let dir = "${RPB_SSH_DIR:-/etc/ssh}";
    let key = format!("{dir}/ssh_host_ed25519_key");
    let script = format!(
        "if [ -n \"${{{HOST_KEY_ENV}:-}}\" ]; then \
         (umask 077 && mkdir -p \"{dir}\" \
         && printf %s \"${HOST_KEY_ENV}\" | base64 -d > \"{key}.rpb-new\" \
         && mv -f \"{key}.rpb-new\" \"{key}\" \
         && printf \"%s\\n\" \"${{{HOST_PUBLIC_KEY_ENV}:-}}\" > \"{key}.pub\" && chmod 0644 \"{key}.pub\") \
         || echo \"rpb: could not install the pod ssh host key\" >&2; fi; \
         [ -f {hook} ] && exec bash {hook} {fallback}; exec {fallback}"
    );
    // The whole script is one quoted word, so no pod root can end it early.
    format!("bash -c {}", pod_tunnel::shell::quote(&script))
}

/// The Blender version `setup.sh` installs unless told otherwise (`RPB_BLENDER_VERSION`).
/// `setup.sh` carries the same default; a unit test keeps the two equal.
pub const DEFAULT_BLENDER_VERSION: &str = "4.5.3";

/// SHA-256 of `blender-4.5.3-linux-x64.tar.xz`, the archive of [`DEFAULT_BLENDER_VERSION`] on
/// download.blender.org. As published in Blender's `blender-4.5.3.sha256`, and as in the AUR
/// `blender-bin` 4.5.3 PKGBUILD (`sha256sums`, mirrored at github.com/archlinux/aur, branch
/// `blender-bin`). `setup.sh` carries the same value.
pub const DEFAULT_BLENDER_SHA256: &str =
    "975c58fcb244273838534bba771e64ad87739216b0f9b39a888531a49a72d845";

/// The `RPB_BLENDER_SHA256` value that installs a download without checking it. Spelled out so
/// nobody sets it by accident.
pub const UNVERIFIED: &str = "unverified";

/// `RPB_BLENDER_VERSION`.
pub const BLENDER_VERSION_KEY: &str = "RPB_BLENDER_VERSION";
/// `RPB_BLENDER_SHA256`.
pub const BLENDER_SHA256_KEY: &str = "RPB_BLENDER_SHA256";

/// How `setup.sh` checks the Blender archive it downloads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checksum {
    /// The archive must have this SHA-256 (64 lowercase hex digits).
    Sha256(String),
    /// Install whatever the download gives (`RPB_BLENDER_SHA256=unverified`).
    Unverified,
}

impl Checksum {
    /// The `RPB_BLENDER_SHA256` value.
    pub fn as_setting(&self) -> &str {
        match self {
            Self::Sha256(hex) => hex,
            Self::Unverified => UNVERIFIED,
        }
    }
}

/// The Blender release `setup.sh` downloads when the pod has none (`BLENDER_BIN` unset), and
/// the checksum its archive must match. [`Default`] is [`DEFAULT_BLENDER_VERSION`] with
/// [`DEFAULT_BLENDER_SHA256`].
///
/// ```
/// use blender_session::assets::{BlenderRelease, Checksum};
///
/// assert_eq!(BlenderRelease::from_settings(None, None)?, BlenderRelease::default());
/// let unchecked = BlenderRelease::from_settings(Some("4.5.2"), Some("unverified"))?;
/// assert_eq!(unchecked.checksum, Checksum::Unverified);
/// // Another version needs its checksum (or the explicit opt-out).
/// assert!(BlenderRelease::from_settings(Some("4.5.2"), None).is_err());
/// # Ok::<(), blender_session::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlenderRelease {
    /// `RPB_BLENDER_VERSION`, e.g. `4.5.3`.
    pub version: String,
    /// `RPB_BLENDER_SHA256`.
    pub checksum: Checksum,
}

impl Default for BlenderRelease {
    fn default() -> Self {
        Self {
            version: DEFAULT_BLENDER_VERSION.to_owned(),
            checksum: Checksum::Sha256(DEFAULT_BLENDER_SHA256.to_owned()),
        }
    }
}

impl BlenderRelease {
    /// The release from the `RPB_BLENDER_VERSION` and `RPB_BLENDER_SHA256` settings (`None`
    /// for unset): unset, the default; the default version without a checksum gets
    /// [`DEFAULT_BLENDER_SHA256`].
    ///
    /// # Errors
    ///
    /// [`Error::Settings`] naming the setting: another version without `RPB_BLENDER_SHA256`,
    /// a version that is not digits, letters and dots, or a checksum that is neither 64 hex
    /// digits nor `unverified`.
    pub fn from_settings(version: Option<&str>, sha256: Option<&str>) -> Result<Self> {
        let version = version.map_or(DEFAULT_BLENDER_VERSION, str::trim);
        let well_formed = version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.');
        if !well_formed {
            return Err(Error::Settings(format!(
                "{BLENDER_VERSION_KEY} must be a Blender version such as {DEFAULT_BLENDER_VERSION}, \
                 not {version:?}"
            )));
        }
        let checksum = match sha256.map(str::trim) {
            Some(UNVERIFIED) => Checksum::Unverified,
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Checksum::Sha256(hex.to_ascii_lowercase())
            }
            Some(_) => {
                return Err(Error::Settings(format!(
                    "{BLENDER_SHA256_KEY} must be the 64 hex digits of the Blender archive's \
                     SHA-256, or `{UNVERIFIED}`"
                )));
            }
            None if version == DEFAULT_BLENDER_VERSION => {
                Checksum::Sha256(DEFAULT_BLENDER_SHA256.to_owned())
            }
            None => {
                return Err(Error::Settings(format!(
                    "{BLENDER_VERSION_KEY}={version} needs {BLENDER_SHA256_KEY}: set it to the \
                     SHA-256 of blender-{version}-linux-x64.tar.xz (listed in \
                     blender-{version}.sha256 next to it on download.blender.org), or to \
                     `{UNVERIFIED}` to install it unchecked"
                )));
            }
        };
        Ok(Self {
            version: version.to_owned(),
            checksum,
        })
    }

    /// The environment `setup.sh` reads for this release.
    pub fn env(&self) -> [(&'static str, &str); 2] {
        [
            (BLENDER_VERSION_KEY, &self.version),
            (BLENDER_SHA256_KEY, self.checksum.as_setting()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_sixteen_hex_digits_of_the_files_hash() {
        assert_eq!(version().len(), 16);
        assert!(version().bytes().all(|b| b.is_ascii_hexdigit()));
        let hash = u64::from_str_radix(version(), 16).expect("hex");
        assert_eq!(hash, assets_hash(all()));
    }

    #[test]
    fn any_change_to_a_name_mode_or_byte_changes_the_version() {
        let base = assets_hash(all());
        for index in 0..all().len() {
            let mut changed = all().to_vec();
            let mut contents = changed[index].contents.to_owned();
            contents.push(' ');
            changed[index].contents = Box::leak(contents.into_boxed_str());
            assert_ne!(
                assets_hash(&changed),
                base,
                "{} contents",
                all()[index].name
            );

            let mut changed = all().to_vec();
            changed[index].mode ^= 0o100;
            assert_ne!(assets_hash(&changed), base, "{} mode", all()[index].name);

            let mut changed = all().to_vec();
            changed[index].name = "renamed";
            assert_ne!(assets_hash(&changed), base, "{} name", all()[index].name);
        }
        // Moving a byte from the end of one file to the start of the next changes it too.
        let mut changed = all().to_vec();
        let (first, second) = (changed[0].contents, changed[1].contents);
        let split = first.len() - 1;
        changed[0].contents = &first[..split];
        changed[1].contents = Box::leak(format!("{}{second}", &first[split..]).into_boxed_str());
        assert_ne!(assets_hash(&changed), base);
    }

    #[test]
    fn the_hash_depends_on_names_and_contents() {
        let base = fnv1a(0xcbf2_9ce4_8422_2325, b"a");
        assert_ne!(base, fnv1a(0xcbf2_9ce4_8422_2325, b"b"));
    }

    #[test]
    fn scripts_are_bash_and_executable() {
        for asset in [SETUP_SCRIPT, SESSION_SCRIPT, BOOT_HOOK] {
            assert!(
                asset.contents.starts_with("#!/usr/bin/env bash\n"),
                "{}",
                asset.name
            );
            assert_eq!(asset.mode, 0o755);
        }
    }

    #[test]
    fn report_is_found_after_other_output() {
        let stdout = "starting Xvfb\n{\"rpb_session\":\"ready\",\"assets_version\":\"x\",\
            \"display\":99,\"ports\":{\"mcp\":1,\"vnc\":2,\"novnc\":3},\
            \"pids\":{\"xvfb\":4,\"x11vnc\":5,\"websockify\":6,\"blender\":7},\"started\":[],\
            \"down\":[],\"addon\":{\"name\":\"rpb_mcp\",\"version\":\"0.1.0\",\"protocol_version\":1,\
            \"blender_version\":\"3.4.1\",\"compute\":{\"backend\":\"CPU\"}},\"log_dir\":\"/l\"}\n";
        let report = SessionReport::parse(stdout).unwrap();
        assert_eq!(report.pids.blender, 7);
        assert_eq!(report.state, SessionState::Ready);
        let addon = report.addon.expect("addon info");
        assert_eq!(addon.compute.backend, crate::mcp::ComputeBackend::Cpu);
        assert!(matches!(
            SessionReport::parse("nothing"),
            Err(Error::ParseReport { source: None })
        ));
    }
    /// The value of `NAME=value` on its own line in `script`.
    fn script_default(script: &str, name: &str) -> String {
        let prefix = format!("{name}=");
        script
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("setup.sh sets {name}"))
            .to_owned()
    }

    #[test]
    fn setup_sh_defaults_to_the_same_blender_release_as_the_library() {
        let script = SETUP_SCRIPT.contents;
        assert_eq!(
            script_default(script, "DEFAULT_BLENDER_VERSION"),
            DEFAULT_BLENDER_VERSION
        );
        assert_eq!(
            script_default(script, "DEFAULT_BLENDER_SHA256"),
            DEFAULT_BLENDER_SHA256
        );
        assert_eq!(script_default(script, "UNVERIFIED"), UNVERIFIED);
    }

    #[test]
    fn setup_sh_pins_the_same_mcp_server_release_as_the_library() {
        let script = SETUP_SCRIPT.contents;
        assert_eq!(
            script_default(script, "DEFAULT_MCP_SERVER_VERSION"),
            crate::mcp::UPSTREAM_VERSION
        );
        assert_eq!(
            script_default(script, "DEFAULT_MCP_SERVER_SHA256"),
            crate::mcp::UPSTREAM_WHEEL_SHA256
        );
        assert_eq!(
            crate::mcp::SERVER_REQUIREMENT,
            format!("mcp-for-blender=={}", crate::mcp::UPSTREAM_VERSION)
        );
    }

    #[test]
    fn the_default_release_carries_its_checksum() {
        let release = BlenderRelease::default();
        assert_eq!(
            release.env(),
            [
                ("RPB_BLENDER_VERSION", "4.5.3"),
                ("RPB_BLENDER_SHA256", DEFAULT_BLENDER_SHA256)
            ]
        );
        assert_eq!(BlenderRelease::from_settings(None, None).unwrap(), release);
        assert_eq!(
            BlenderRelease::from_settings(Some("4.5.3"), None).unwrap(),
            release
        );
    }

    #[test]
    fn another_version_needs_its_checksum_or_the_explicit_opt_out() {
        let message = BlenderRelease::from_settings(Some("4.5.2"), None)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("RPB_BLENDER_VERSION=4.5.2 needs RPB_BLENDER_SHA256")
                && message.contains("unverified"),
            "{message}"
        );
        let hex = "AB".repeat(32);
        let pinned = BlenderRelease::from_settings(Some("4.5.2"), Some(&hex)).unwrap();
        assert_eq!(pinned.checksum, Checksum::Sha256("ab".repeat(32)));
        let unchecked = BlenderRelease::from_settings(Some("4.5.2"), Some("unverified")).unwrap();
        assert_eq!(unchecked.env()[1], ("RPB_BLENDER_SHA256", "unverified"));
    }

    #[test]
    fn malformed_versions_and_checksums_name_their_setting() {
        for bad in ["yes", "0", &"g".repeat(64), "Unverified", "none"] {
            let message = BlenderRelease::from_settings(None, Some(bad))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("RPB_BLENDER_SHA256 must be"),
                "{bad}: {message}"
            );
        }
        for bad in ["", "latest", "4.5.3; rm -rf /", "../4.5"] {
            let message = BlenderRelease::from_settings(Some(bad), Some(UNVERIFIED))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("RPB_BLENDER_VERSION must be"),
                "{bad}: {message}"
            );
        }
    }
}
