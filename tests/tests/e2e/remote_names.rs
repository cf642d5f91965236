//! Remote file names a shell would misread (spaces, quotes, `$(...)`, newlines, a leading dash,
//! globs, non-UTF-8 bytes) through pod-tunnel's uploads and downloads against a real sshd, over
//! SFTP and SCP: each arrives under exactly its own name with its bytes, both ways, and nothing
//! else appears on either side. (SCP refused names with a tab or a newline before pod-tunnel
//! gave SCP only names of its own choosing; a refusal now counts as a failure.)

#![allow(
    clippy::unnecessary_debug_formatting,
    reason = "names are shown escaped: newlines and invalid bytes included"
)]

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::time::Duration;

use pod_tunnel::{Endpoint, HostKeyPolicy, Protocol, Session};
use test_support::names::hostile_file_names;
use test_support::sshd::Sshd;

use crate::summary::{Summary, chain};

fn entries(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_file_names_with_shell_metacharacters_round_trip_or_fail_clearly()
-> anyhow::Result<()> {
    let sshd = Sshd::start()
        .map_err(|e| anyhow::anyhow!("start sshd (Debian package openssh-server): {e:#}"))?;
    let scratch = tempfile::tempdir()?;
    let session = Session::builder()
        .endpoint(Endpoint::new("127.0.0.1", sshd.port()))
        .user(sshd.user())
        .identity_file(sshd.client_key())
        .host_key_policy(HostKeyPolicy::accept_new(
            scratch.path().join("known_hosts"),
        ))
        .connect_timeout(Duration::from_secs(5))
        .io_timeout(Duration::from_secs(15))
        .build()?
        .connect()
        .await?;
    let mut summary = Summary::default();
    for protocol in [Protocol::Sftp, Protocol::Scp] {
        let tag = format!("{protocol:?}").to_lowercase();
        let src = scratch.path().join(format!("src-{tag}"));
        let remote = scratch.path().join(format!("remote-{tag}"));
        let back = scratch.path().join(format!("back-{tag}"));
        for dir in [&src, &remote, &back] {
            std::fs::create_dir(dir)?;
        }
        let mut outcomes = Vec::new();
        for (index, name) in hostile_file_names().into_iter().enumerate() {
            let data = format!("scene {index} {name:?}\n").into_bytes();
            std::fs::write(src.join(&name), &data)?;
            let remote_before = entries(&remote);
            let upload = tokio::time::timeout(
                Duration::from_secs(30),
                session
                    .upload(src.join(&name), remote.join(&name))
                    .protocol(protocol)
                    .send(),
            )
            .await;
            let outcome = match upload {
                Err(_) => Err(format!("{name:?}: upload hung")),
                Ok(Err(error)) => {
                    let text = chain(&error);
                    let side_effects = if entries(&remote) == remote_before {
                        "none"
                    } else {
                        "some"
                    };
                    Err(format!(
                        "{name:?}: upload refused (side effects: {side_effects}): {text}"
                    ))
                }
                Ok(Ok(_)) => round_trip(&session, protocol, &name, &data, &remote, &back).await,
            };
            outcomes.push(outcome.map_err(|why| format!("{tag}: {why}")));
        }
        let expected: Vec<OsString> = {
            let mut names = hostile_file_names();
            names.sort();
            names
        };
        let stray: Vec<OsString> = entries(&remote)
            .into_iter()
            .chain(entries(&back))
            .filter(|name| !expected.contains(name))
            .collect();
        outcomes.push(
            if stray.is_empty() && !scratch.path().join("pwned").exists() {
                Ok(())
            } else {
                Err(format!("{tag}: stray files {stray:?}"))
            },
        );
        summary.record(
            &format!(
                "remote file names over {tag} (space, quotes, $(), newline, dash, glob, non-UTF-8)"
            ),
            "exact name and bytes both ways; no stray file",
            outcomes,
        );
    }
    summary.finish("hostile inputs: remote file names");
    Ok(())
}

async fn round_trip(
    session: &Session,
    protocol: Protocol,
    name: &OsStr,
    data: &[u8],
    remote: &Path,
    back: &Path,
) -> Result<(), String> {
    let arrived = std::fs::read(remote.join(name)).map_err(|e| {
        format!(
            "{name:?}: upload reported success but the file is missing ({e}); remote has {:?}",
            entries(remote)
        )
    })?;
    if arrived != data {
        return Err(format!("{name:?}: uploaded bytes differ"));
    }
    let download = tokio::time::timeout(
        Duration::from_secs(30),
        session
            .download(remote.join(name), back.join(name))
            .protocol(protocol)
            .send(),
    )
    .await;
    match download {
        Err(_) => Err(format!("{name:?}: download hung")),
        Ok(Err(error)) => Err(format!(
            "{name:?}: download refused (local file left: {}): {}",
            back.join(name).exists(),
            chain(&error)
        )),
        Ok(Ok(_)) => match std::fs::read(back.join(name)) {
            Ok(bytes) if bytes == data => Ok(()),
            Ok(_) => Err(format!("{name:?}: downloaded bytes differ")),
            Err(e) => Err(format!("{name:?}: downloaded file missing ({e})")),
        },
    }
}
