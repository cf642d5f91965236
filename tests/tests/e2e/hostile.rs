//! Hostile inputs: project names, `.env` files, API answers and blender-mcp replies that a
//! careless or malicious peer could produce. Each must end in a clear error (or a documented,
//! harmless reading) with no side effect: nothing created or changed in the workspace, no
//! secret in the message, no hang.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use project_store::{ConfigKey, Error as StoreError, OnExisting, ProjectName, Store, Warning};
use runpod_api::{PodId, RetryPolicy};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::summary::{Summary, chain, no_secret};

const API_KEY: &str = "rpb-hostile-api-key-5f3c9a";
const POD_JSON: &str = include_str!("../../../runpod-api/tests/it/fixtures/pod_running.json");

/// Every file under `root` with its kind and content (or size, for large files).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut budget = 10_000_u32;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            budget = budget.saturating_sub(1);
            assert!(budget > 0, "too many files under {}", root.display());
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let what = if meta.is_symlink() {
                format!("link -> {:?}", std::fs::read_link(&path).ok())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if meta.is_file() && meta.len() <= 1 << 20 {
                format!("{:?}", std::fs::read(&path).unwrap_or_default())
            } else {
                format!("other, {} bytes", meta.len())
            };
            seen.insert(path, what);
        }
    }
    seen
}

fn unchanged(before: &BTreeMap<PathBuf, String>, root: &Path) -> Result<(), String> {
    let after = snapshot(root);
    if &after == before {
        return Ok(());
    }
    let changed: Vec<_> = after
        .keys()
        .chain(before.keys())
        .filter(|path| after.get(*path) != before.get(*path))
        .collect();
    Err(format!("the workspace changed: {changed:?}"))
}

/// A message a person can act on: names something, no raw control characters.
fn clear(message: &str) -> Result<(), String> {
    if message.len() < 20 {
        return Err(format!("message too terse: {message:?}"));
    }
    if message.chars().any(char::is_control) {
        return Err(format!("raw control character in message: {message:?}"));
    }
    no_secret(message, &[API_KEY])
}

#[test]
fn hostile_project_names_and_env_files_are_refused_without_side_effects() -> anyhow::Result<()> {
    let mut summary = Summary::default();
    let workspace = tempfile::tempdir()?;
    let store = Store::builder()
        .root(workspace.path().join("runpod"))
        .ignore_environment()
        .build()?;
    store.init()?;
    let chair = ProjectName::new("chair")?;
    store.create_project(&chair, OnExisting::Fail)?;

    // Project names.
    let long = "a".repeat(101);
    let long_unicode = "é".repeat(51);
    let names: Vec<&str> = vec![
        "",
        ".",
        "..",
        "../etc",
        "a/../../b",
        "/abs",
        "a/b",
        "a\\b",
        "..\\..\\windows",
        "a\0b",
        "a\nb",
        "a\rb",
        "a\tb",
        "\u{1b}[31mred",
        "del\u{7f}",
        "nel\u{85}x",
        " lead",
        "trail ",
        ".hidden",
        ".git",
        "-rf",
        "--help",
        &long,
        &long_unicode,
        "ch\u{200B}air",
        "chair\u{200D}",
        "\u{202E}gpj.exe",
        "\u{FEFF}chair",
        "ch\u{00AD}air",
        "\u{2066}chair\u{2069}",
        "\u{0441}hair",
        "ch\u{0430}ir",
        "\u{FF43}\u{FF48}\u{FF41}\u{FF49}\u{FF52}",
        "p\u{03BF}d",
    ];
    let before = snapshot(workspace.path());
    let outcomes: Vec<Result<(), String>> = names
        .iter()
        .map(|name| match ProjectName::new(*name) {
            Ok(_) => Err(format!("{name:?} was accepted")),
            Err(error) => clear(&chain(&error)),
        })
        .collect();
    summary.record(
        "project name (traversal, separators, control, long, invisible, confusable)",
        "rejected with the rule; workspace unchanged",
        outcomes,
    );
    summary.record_one(
        "project names: side effects",
        "workspace tree byte for byte",
        unchanged(&before, workspace.path()),
    );

    // Version stems go through the same rules when saving.
    let stems = [
        "../escape",
        "a/b",
        "x\ny",
        "-rf",
        ".hidden",
        "ch\u{200B}air",
    ];
    let outcomes: Vec<Result<(), String>> = stems
        .iter()
        .map(|stem| {
            let before = snapshot(workspace.path());
            match store
                .save_version(&chair, stem)
                .write_from(&b"BLENDER-v300"[..])
            {
                Ok(entry) => Err(format!("stem {stem:?} was accepted as {}", entry.name)),
                Err(error) => {
                    clear(&chain(&error))?;
                    unchanged(&before, workspace.path())
                }
            }
        })
        .collect();
    summary.record(
        "version stem (traversal, separators, control, invisible)",
        "rejected; manifest and files unchanged",
        outcomes,
    );

    env_files(&mut summary)?;
    summary.finish("hostile inputs: names and .env");
    Ok(())
}

/// A fresh workspace whose `.env` is replaced by `make`.
fn env_case(
    make: impl FnOnce(&Path) -> std::io::Result<()>,
) -> anyhow::Result<(tempfile::TempDir, Store)> {
    let workspace = tempfile::tempdir()?;
    let store = Store::builder()
        .root(workspace.path().join("runpod"))
        .ignore_environment()
        .build()?;
    store.init()?;
    let env = store.env_file().to_path_buf();
    std::fs::remove_file(&env)?;
    make(&env)?;
    Ok((workspace, store))
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Loads the config and checks: no change, within a second, no secret in anything shown.
fn load_checked(
    workspace: &Path,
    store: &Store,
    judge: impl FnOnce(Result<project_store::Config, StoreError>) -> Result<(), String>,
) -> Result<(), String> {
    let before = snapshot(workspace);
    let started = Instant::now();
    let loaded = store.load_config();
    let took = started.elapsed();
    if took > Duration::from_secs(2) {
        return Err(format!("loading took {took:?}"));
    }
    if let Ok(config) = &loaded {
        no_secret(&format!("{config:?}"), &[API_KEY])?;
        for warning in &config.warnings {
            clear(&warning.to_string())?;
        }
    }
    if let Err(error) = &loaded {
        clear(&chain(error))?;
        no_secret(&format!("{error:?}"), &[API_KEY])?;
    }
    judge(loaded)?;
    unchanged(&before, workspace)
}

fn expect_error(
    wanted: &'static str,
    matches: fn(&StoreError) -> bool,
) -> impl FnOnce(Result<project_store::Config, StoreError>) -> Result<(), String> {
    move |loaded| match loaded {
        Err(error) if matches(&error) => Ok(()),
        Err(error) => Err(format!("wanted {wanted}, got {error:?}")),
        Ok(_) => Err(format!("wanted {wanted}, the file loaded")),
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one table of cases reads best in one place"
)]
fn env_files(summary: &mut Summary) -> anyhow::Result<()> {
    let secret_line = format!("RUNPOD_API_KEY={API_KEY}\n");
    let mut outcomes = Vec::new();

    // Binary garbage: every byte value, NULs, invalid UTF-8.
    let garbage: Vec<u8> = (0..4096_u32)
        .map(|i| u8::try_from((i * 7919) % 256).unwrap_or(0))
        .collect();
    let (dir, store) = env_case(|env| write_mode(env, &garbage, 0o600))?;
    outcomes.push(load_checked(dir.path(), &store, |loaded| match loaded {
        Ok(config) if config.api_key.is_none() => Ok(()),
        Ok(_) => Err("binary garbage produced an API key".into()),
        Err(error) => Err(format!("binary file: {error:?}")),
    }));

    // Huge: 50 MiB (sparse, so it costs no disk), and 2 MiB of real lines.
    let (dir, store) = env_case(|env| {
        let file = std::fs::File::create(env)?;
        file.set_len(50 << 20)
    })?;
    outcomes.push(load_checked(
        dir.path(),
        &store,
        expect_error("ConfigTooLarge", |e| {
            matches!(e, StoreError::ConfigTooLarge { .. })
        }),
    ));
    let (dir, store) = env_case(|env| write_mode(env, &b"A=1\n".repeat(512 << 10), 0o600))?;
    outcomes.push(load_checked(
        dir.path(),
        &store,
        expect_error("ConfigTooLarge", |e| {
            matches!(e, StoreError::ConfigTooLarge { .. })
        }),
    ));

    // Malformed lines: each a warning with its line number; the good line still counts.
    let malformed = b"NO_EQUALS_SIGN\nRUNPOD_POD_ID=\"unterminated\nBAD KEY=1\n=novalue\nRPB_MCP_PORT=notaport\nRUNPOD_GPU_COUNT=1\nRUNPOD_GPU_COUNT=2\nRUNPOD_IMAGE=ok/image:1\n";
    let (dir, store) = env_case(|env| write_mode(env, malformed, 0o600))?;
    outcomes.push(load_checked(dir.path(), &store, |loaded| {
        let config = loaded.map_err(|e| format!("{e:?}"))?;
        let lines = config
            .warnings
            .iter()
            .filter(|w| matches!(w, Warning::Line { .. } | Warning::InvalidValue { .. }))
            .count();
        if lines >= 4 && config.image.as_deref() == Some("ok/image:1") {
            Ok(())
        } else {
            Err(format!("warnings {:?}", config.warnings))
        }
    }));

    // An invalid value for a known key is reported without echoing the value.
    let (dir, store) =
        env_case(|env| write_mode(env, format!("RPB_VNC_PORT={API_KEY}\n").as_bytes(), 0o600))?;
    outcomes.push(load_checked(dir.path(), &store, |loaded| {
        let config = loaded.map_err(|e| format!("{e:?}"))?;
        if config
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::InvalidValue { .. }))
        {
            Ok(())
        } else {
            Err(format!("no warning: {:?}", config.warnings))
        }
    }));

    // Not a regular file: a symlink to /dev/zero (never ends), a FIFO (blocks), a directory.
    let (dir, store) = env_case(|env| std::os::unix::fs::symlink("/dev/zero", env))?;
    outcomes.push(load_checked(
        dir.path(),
        &store,
        expect_error("ConfigNotAFile", |e| {
            matches!(e, StoreError::ConfigNotAFile { .. })
        }),
    ));
    let (dir, store) = env_case(|env| {
        let status = std::process::Command::new("mkfifo").arg(env).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "mkfifo failed (Debian package coreutils)",
            ))
        }
    })?;
    outcomes.push(load_checked(
        dir.path(),
        &store,
        expect_error("ConfigNotAFile", |e| {
            matches!(e, StoreError::ConfigNotAFile { .. })
        }),
    ));
    let (dir, store) = env_case(|env| std::fs::create_dir(env))?;
    outcomes.push(load_checked(
        dir.path(),
        &store,
        expect_error("ConfigNotAFile", |e| {
            matches!(e, StoreError::ConfigNotAFile { .. })
        }),
    ));

    // Symlinks: a loop, a dangling one, one to a world-readable file elsewhere with a secret.
    let (dir, store) = env_case(|env| std::os::unix::fs::symlink(env, env))?;
    outcomes.push(load_checked(
        dir.path(),
        &store,
        expect_error("ReadConfig", |e| matches!(e, StoreError::ReadConfig { .. })),
    ));
    let (dir, store) =
        env_case(|env| std::os::unix::fs::symlink(env.with_file_name("missing-target"), env))?;
    outcomes.push(load_checked(
        dir.path(),
        &store,
        expect_error("ConfigNotFound", |e| {
            matches!(e, StoreError::ConfigNotFound { .. })
        }),
    ));
    let elsewhere = tempfile::tempdir()?;
    let target = elsewhere.path().join("shared.env");
    write_mode(&target, secret_line.as_bytes(), 0o644)?;
    let (dir, store) = env_case(|env| std::os::unix::fs::symlink(&target, env))?;
    outcomes.push(load_checked(dir.path(), &store, insecure_warned));

    // World-readable and group-readable files holding secrets.
    for mode in [0o644, 0o640, 0o604] {
        let (dir, store) = env_case(|env| write_mode(env, secret_line.as_bytes(), mode))?;
        outcomes.push(load_checked(dir.path(), &store, insecure_warned));
    }
    summary.record(
        ".env (binary, 50 MiB, 2 MiB, malformed, bad value, /dev/zero, FIFO, dir, loop, dangling, symlink elsewhere, 0644/0640/0604)",
        "clear error or line warnings within 2 s; no file changed; key never shown",
        outcomes,
    );

    // Writes that would smuggle a second setting in, or write through a FIFO.
    let mut outcomes = Vec::new();
    let (dir, store) = env_case(|env| write_mode(env, b"RUNPOD_IMAGE=a/b:1\n", 0o600))?;
    for (key, value) in [
        (ConfigKey::PodId, "abc\nRUNPOD_API_KEY=evil"),
        (ConfigKey::Image, "x\rRUNPOD_POD_ID=evil"),
        (ConfigKey::McpPort, "99999"),
        (ConfigKey::GpuCount, "-1"),
    ] {
        let before = snapshot(dir.path());
        outcomes.push(match store.set_config(key, value) {
            Ok(_) => Err(format!("{key} = {value:?} was written")),
            Err(error) => clear(&chain(&error)).and_then(|()| unchanged(&before, dir.path())),
        });
    }
    for key in ["BAD KEY", "A=B", "X\nY", ""] {
        let before = snapshot(dir.path());
        outcomes.push(match store.set_env_var(key, "1") {
            Ok(_) => Err(format!("key {key:?} was written")),
            Err(error) => clear(&chain(&error)).and_then(|()| unchanged(&before, dir.path())),
        });
    }
    let before = snapshot(dir.path());
    outcomes.push(
        match store.set_secret(
            ConfigKey::VncPassword,
            &SecretString::from(format!("{API_KEY}\nRUNPOD_POD_ID=evil")),
        ) {
            Ok(_) => Err("a secret with a newline was written".into()),
            Err(error) => clear(&chain(&error))
                .and_then(|()| no_secret(&format!("{error:?}"), &[API_KEY]))
                .and_then(|()| unchanged(&before, dir.path())),
        },
    );
    summary.record(
        ".env writes (newline injection, bad values, bad keys, secret with newline)",
        "refused; .env byte for byte unchanged; secret never shown",
        outcomes,
    );
    Ok(())
}

fn insecure_warned(loaded: Result<project_store::Config, StoreError>) -> Result<(), String> {
    let config = loaded.map_err(|e| format!("{e:?}"))?;
    if config
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::InsecurePermissions { .. }))
    {
        Ok(())
    } else {
        Err(format!("no permission warning: {:?}", config.warnings))
    }
}

/// How a fake server answers each connection.
#[derive(Clone)]
enum Reply {
    /// These bytes, then close.
    Bytes(Vec<u8>),
    /// A head, then a byte every 100 ms, forever (until the client leaves).
    Drip(Vec<u8>),
    /// Close without a word.
    Close,
}

/// A one-shot-per-connection server on 127.0.0.1 answering every request with `reply`;
/// returns its address and the request heads it saw.
async fn fake_server(
    reply: Reply,
) -> anyhow::Result<(
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        for _ in 0..50 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 4096];
                let read = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        head.extend_from_slice(&buf[..n]);
                        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.contains(&b'}') {
                            break;
                        }
                    }
                })
                .await;
                if read.is_err() {
                    return;
                }
                if let Ok(mut log) = log.lock() {
                    log.push(String::from_utf8_lossy(&head).into_owned());
                }
                match reply {
                    Reply::Bytes(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    Reply::Drip(head) => {
                        let _ = stream.write_all(&head).await;
                        for _ in 0..600 {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if stream.write_all(b"a").await.is_err() {
                                break;
                            }
                        }
                    }
                    Reply::Close => drop(stream),
                }
            });
        }
    });
    Ok((addr, seen, task))
}

fn http(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_ok(body: &[u8]) -> Reply {
    Reply::Bytes(http("200 OK", "application/json", body))
}

#[allow(
    clippy::too_many_lines,
    reason = "one table of cases reads best in one place"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_api_answers_and_mcp_replies_end_in_clear_errors() -> anyhow::Result<()> {
    let mut summary = Summary::default();
    let giant = {
        let mut body = br#"{"id":"7h9k2m4n6p","name":""#.to_vec();
        body.resize(64 << 20, b'x');
        body
    };
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let lying_length = {
        let mut bytes = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5000\r\nconnection: close\r\n\r\n".to_vec();
        bytes.extend_from_slice(&POD_JSON.as_bytes()[..200]);
        bytes
    };
    let cases: Vec<(&str, Reply, bool)> = vec![
        (
            "truncated JSON",
            json_ok(&POD_JSON.as_bytes()[..POD_JSON.len() / 2]),
            false,
        ),
        ("empty body", json_ok(b""), false),
        (
            "wrong type (disk as text)",
            json_ok(POD_JSON.replacen("\"disk\": 50", "\"disk\": \"fifty\"", 1).as_bytes()),
            false,
        ),
        (
            "wrong type (id as number)",
            json_ok(
                POD_JSON
                    .replacen("\"id\": \"7h9k2m4n6p\"", "\"id\": 7", 1)
                    .as_bytes(),
            ),
            false,
        ),
        ("array instead of object", json_ok(b"[1,2,3]"), false),
        ("NUL and invalid UTF-8", json_ok(b"{\"id\":\"\0\xff\xfe\"}"), false),
        ("100 000 levels of nesting", json_ok(&deep), false),
        ("64 MiB body", json_ok(&giant), false),
        (
            "unknown status",
            json_ok(
                POD_JSON
                    .replacen("\"status\": \"RUNNING\"", "\"status\": \"HIBERNATING\"", 1)
                    .as_bytes(),
            ),
            true,
        ),
        (
            "HTML 502 from a proxy",
            Reply::Bytes(http(
                "502 Bad Gateway",
                "text/html",
                b"<html><body>bad gateway</body></html>",
            )),
            false,
        ),
        (
            "problem document with wrong types",
            Reply::Bytes(http(
                "400 Bad Request",
                "application/problem+json",
                br#"{"type":5,"title":[],"status":"x","detail":{"a":1}}"#,
            )),
            false,
        ),
        (
            "429 with Retry-After of a week",
            Reply::Bytes(
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 604800\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_vec(),
            ),
            false,
        ),
        ("content-length larger than the body", Reply::Bytes(lying_length), false),
        ("not HTTP at all", Reply::Bytes(b"SSH-2.0-OpenSSH\r\n".to_vec()), false),
        ("connection closed at once", Reply::Close, false),
        (
            "never-ending body",
            Reply::Drip(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n100000\r\n{\"id\":\""
                    .to_vec(),
            ),
            false,
        ),
    ];
    let mut outcomes = Vec::new();
    let mut slowest = Duration::ZERO;
    for (name, reply, should_parse) in cases {
        let (addr, seen, server) = fake_server(reply).await?;
        let client = runpod_api::Client::builder()
            .base_url(format!("http://{addr}/v2"))
            .api_key(SecretString::from(API_KEY))
            .connect_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(3))
            .retry_policy(
                RetryPolicy::default()
                    .with_max_attempts(2)
                    .with_backoff(Duration::from_millis(20), Duration::from_millis(50))
                    .with_max_total(Duration::from_secs(5))
                    .with_max_retry_after(Duration::from_secs(1)),
            )
            .build()?;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            client.get_pod(&PodId::new("7h9k2m4n6p")),
        )
        .await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        server.abort();
        let outcome = match answer {
            Err(_) => Err(format!("{name}: no answer within 20 s")),
            Ok(Ok(pod)) if should_parse => {
                if matches!(pod.status, runpod_api::PodStatus::Unknown(_)) {
                    Ok(())
                } else {
                    Err(format!("{name}: status read as {:?}", pod.status))
                }
            }
            Ok(Ok(_)) => Err(format!("{name}: accepted as a pod")),
            Ok(Err(error)) => clear(&chain(&error))
                .and_then(|()| no_secret(&format!("{error:?}"), &[API_KEY]))
                .map_err(|why| format!("{name}: {why}")),
        };
        let methods_ok = seen
            .lock()
            .is_ok_and(|heads| heads.iter().all(|head| head.starts_with("GET ")));
        outcomes.push(outcome.and_then(|()| {
            if methods_ok {
                Ok(())
            } else {
                Err(format!("{name}: a request other than GET was sent"))
            }
        }));
    }
    summary.record(
        "API answer (truncated, wrong types, unknown status, 64 MiB, nesting, HTML, lies, drip)",
        &format!(
            "clear error or Unknown status; only GETs sent; key never shown; slowest {slowest:.1?}"
        ),
        outcomes,
    );

    mcp_replies(&mut summary).await?;
    summary.finish("hostile inputs: API answers and MCP replies");
    Ok(())
}

async fn mcp_replies(summary: &mut Summary) -> anyhow::Result<()> {
    use blender_session::mcp::{Client, Error};
    type Check = fn(&Error) -> bool;
    let mut huge = br#"{"status":"success","result":""#.to_vec();
    huge.resize(2 << 20, b'x');
    huge.extend_from_slice(b"\"}");
    let cases: Vec<(&str, Reply, Check)> = vec![
        (
            "garbage",
            Reply::Bytes(b"hello, this is not json\n".to_vec()),
            |e| matches!(e, Error::InvalidJson { .. }),
        ),
        (
            "never-ending",
            Reply::Drip(br#"{"status":"success","result":""#.to_vec()),
            Error::is_timeout,
        ),
        ("huge (2 MiB over a 1 MiB limit)", Reply::Bytes(huge), |e| {
            matches!(e, Error::TooLarge { .. })
        }),
        (
            "closed mid-reply",
            Reply::Bytes(br#"{"status":"succ"#.to_vec()),
            |e| matches!(e, Error::Closed { .. }),
        ),
        ("closed at once", Reply::Close, |e| {
            matches!(e, Error::Closed { .. } | Error::Receive { .. })
        }),
        (
            "JSON without status",
            Reply::Bytes(br#"{"foo":1}"#.to_vec()),
            |e| matches!(e, Error::Malformed { .. }),
        ),
        (
            "unknown status",
            Reply::Bytes(br#"{"status":"maybe","result":{}}"#.to_vec()),
            |e| matches!(e, Error::Malformed { .. }),
        ),
        ("a bare array", Reply::Bytes(b"[1,2,3]".to_vec()), |e| {
            matches!(e, Error::Malformed { .. } | Error::InvalidJson { .. })
        }),
        (
            "invalid UTF-8",
            Reply::Bytes(b"{\"status\":\"success\",\"result\":\"\xff\xfe\"}".to_vec()),
            |e| matches!(e, Error::InvalidJson { .. }),
        ),
        (
            "result of the wrong shape",
            Reply::Bytes(br#"{"status":"success","result":5}"#.to_vec()),
            |e| matches!(e, Error::UnexpectedResult { .. }),
        ),
    ];
    let mut outcomes = Vec::new();
    for (name, reply, expected) in cases {
        let (addr, _seen, server) = fake_server(reply).await?;
        let mut client = Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .command_timeout(Duration::from_secs(2))
            .max_reply_bytes(1 << 20)
            .build(addr.to_string());
        let answer = tokio::time::timeout(Duration::from_secs(10), client.scene_info()).await;
        server.abort();
        outcomes.push(match answer {
            Err(_) => Err(format!("{name}: no answer within 10 s")),
            Ok(Ok(_)) => Err(format!("{name}: accepted")),
            Ok(Err(error)) if expected(&error) => {
                let protocol_intact = matches!(error, Error::UnexpectedResult { .. });
                if !protocol_intact && client.is_connected() {
                    Err(format!("{name}: the connection was kept after {error:?}"))
                } else {
                    clear(&chain(&error)).map_err(|why| format!("{name}: {why}"))
                }
            }
            Ok(Err(error)) => Err(format!("{name}: unexpected {error:?}")),
        });
    }
    summary.record(
        "MCP reply (garbage, never-ending, 2 MiB, cut, wrong shapes, invalid UTF-8)",
        "the expected error within its timeout; connection dropped after transport errors",
        outcomes,
    );
    Ok(())
}
