//! Talking to the pod and its Blender: `attach`, `exec`, `py` and `mcp-config`.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use blender_session::daemon::{self};
use blender_session::mcp;
use clap::Args;
use pod_tunnel::shell;
use serde_json::json;

use crate::ctx::{Ctx, PodArgs, attach, blender_ports, pod_id_of};
use crate::output::Outcome;

#[derive(Debug, Clone, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Run a shell command line instead: the arguments, joined with spaces, go to the pod's
    /// shell as they are, so pipes, `;`, `$VAR` and globs work.
    #[arg(long, short = 'c')]
    shell: bool,
    /// The program and its arguments (after `--`), each passed exactly as given.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl ExecArgs {
    /// Refuses the one ambiguous form: a single argument that a shell would split or expand,
    /// without `--shell`. It used to run as a shell line; now it would look for a program of
    /// that name, so say how to keep the old meaning instead of guessing.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.command.as_slice() {
            [only] if !self.shell && shell::quote(only) != *only => Err(
                "`rpb exec -- PROGRAM ARG...` passes each argument as it is, and this single \
                 argument has spaces or shell characters; to run it as a shell command line, \
                 add --shell (`rpb exec --shell -- '...'`), or split the program from its \
                 arguments"
                    .to_owned(),
            ),
            _ => Ok(()),
        }
    }

    /// The command line the pod's shell runs.
    fn command_line(&self) -> String {
        if self.shell {
            self.command.join(" ")
        } else {
            shell::join(&self.command)
        }
    }
}

pub(crate) async fn exec(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<Outcome> {
    if let Err(message) = args.check() {
        bail!(message);
    }
    let progress = ctx.progress().spinner("connecting");
    let attached = attach(ctx, &args.pod, &progress).await;
    progress.finish();
    let (_, session) = attached?;
    let command = args.command_line();
    let output = session
        .host()
        .run(&command, None, Duration::from_secs(args.timeout))
        .await?;
    let code = output.code.unwrap_or(128);
    if !ctx.global.json {
        eprint!("{}", output.stderr);
    }
    Ok(Outcome::new(
        json!({"code": output.code, "stdout": output.stdout, "stderr": output.stderr}),
        output.stdout,
    )
    .with_code(u8::try_from(code).unwrap_or(1)))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PyArgs {
    /// The Python code.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    code: Option<String>,
    /// Read the code from this file (`-` for standard input).
    #[arg(long, short)]
    file: Option<PathBuf>,
    #[command(flatten)]
    pod: PodArgs,
}

pub(crate) async fn py(ctx: &Ctx, args: PyArgs) -> anyhow::Result<Outcome> {
    let code = match (&args.code, &args.file) {
        (Some(code), _) => code.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            if std::io::stdin().is_terminal() {
                bail!("--file - reads the code from standard input; pipe it in");
            }
            let mut code = String::new();
            std::io::stdin()
                .read_to_string(&mut code)
                .context("reading the code from standard input")?;
            code
        }
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => bail!("give the code or --file"),
    };
    let profile = ctx.profile_with(&args.pod.explicit())?;
    let port = blender_ports(ctx, &pod_id_of(&profile)?)?.mcp;
    let mut client = blender_session::mcp::Client::connect(format!("127.0.0.1:{port}"))
        .await
        .with_context(|| {
            format!("connecting to Blender on 127.0.0.1:{port}; is the session up (`rpb start`, `rpb tunnel up`)?")
        })?;
    let printed = client.execute_code(&code).await?;
    client.close().await;
    Ok(Outcome::new(json!({"output": printed}), printed))
}

// ---------------------------------------------------------------------------------------------
// tunnel

#[derive(Debug, Clone, Args)]
pub(crate) struct McpConfigArgs {
    /// Where to write it [default: .mcp.json in the workspace].
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Print it instead of writing it.
    #[arg(long)]
    print: bool,
}

pub(crate) fn mcp_config(ctx: &Ctx, args: &McpConfigArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile()?;
    let port = match daemon::status(&ctx.store.state_dir())? {
        daemon::TunnelStatus::Running(record) => record.mcp_port,
        _ => profile.local_ports.mcp,
    };
    if args.print {
        let document = mcp_json(port);
        let text = serde_json::to_string_pretty(&document)?;
        return Ok(Outcome::new(document, text));
    }
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| ctx.store.root().join(".mcp.json"));
    let existing = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    };
    let (document, changes) = merged_mcp_json(existing.as_deref(), port)
        .with_context(|| format!("{} was left unchanged", path.display()))?;
    let summary = if changes.is_empty() {
        format!(
            "{} already runs uvx {} → 127.0.0.1:{port}: unchanged",
            path.display(),
            mcp::SERVER_REQUIREMENT
        )
    } else {
        let text = format!("{}\n", serde_json::to_string_pretty(&document)?);
        write_replacing(&path, text.as_bytes())?;
        let mut summary = format!(
            "wrote {} (uvx {} → 127.0.0.1:{port}):",
            path.display(),
            mcp::SERVER_REQUIREMENT
        );
        for change in &changes {
            summary.push_str("\n  ");
            summary.push_str(change);
        }
        summary
    };
    Ok(Outcome::new(
        json!({
            "path": path,
            "mcp_port": port,
            "config": document,
            "changed": !changes.is_empty(),
            "changes": changes,
        }),
        summary,
    ))
}

/// `existing` (a `.mcp.json`, if any) with rpb's `blender` server put in, and what that
/// changed, one line each; every other key and server is kept. An empty list: nothing to do.
fn merged_mcp_json(
    existing: Option<&[u8]>,
    port: u16,
) -> anyhow::Result<(serde_json::Value, Vec<String>)> {
    let ours = mcp_json(port);
    let Some(bytes) = existing else {
        return Ok((
            ours,
            vec!["created it with the mcpServers.blender entry".to_owned()],
        ));
    };
    let mut document: serde_json::Value = serde_json::from_slice(bytes).context(
        "it is not JSON; move it aside (or print rpb's entry with `rpb mcp-config --print`)",
    )?;
    let Some(servers) = document
        .as_object_mut()
        .map(|object| object.entry("mcpServers").or_insert_with(|| json!({})))
        .and_then(serde_json::Value::as_object_mut)
    else {
        bail!("its top level or its mcpServers is not a JSON object; fix it or move it aside");
    };
    let mut wanted = ours["mcpServers"]["blender"].clone();
    // Environment variables of the user's own (DISABLE_TELEMETRY, an API key) stay; rpb sets
    // only where Blender is.
    let existing_env = servers
        .get("blender")
        .and_then(|server| server.get("env"))
        .and_then(serde_json::Value::as_object);
    if let (Some(existing), Some(env)) = (
        existing_env,
        wanted
            .get_mut("env")
            .and_then(serde_json::Value::as_object_mut),
    ) {
        for (key, value) in existing {
            env.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let mut changes = Vec::new();
    match servers.get("blender") {
        None => changes.push("added mcpServers.blender".to_owned()),
        Some(current) if *current == wanted => {}
        Some(current) => {
            for key in ["command", "args", "env"] {
                if current.get(key) != wanted.get(key) {
                    changes.push(format!(
                        "mcpServers.blender.{key}: {} → {}",
                        current
                            .get(key)
                            .map_or_else(|| "none".to_owned(), ToString::to_string),
                        wanted[key]
                    ));
                }
            }
            let extra: Vec<&String> = current
                .as_object()
                .map(|fields| {
                    fields
                        .keys()
                        .filter(|key| !["command", "args", "env"].contains(&key.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            if !extra.is_empty() {
                changes.push(format!(
                    "mcpServers.blender: dropped {}",
                    extra
                        .iter()
                        .map(|key| key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if changes.is_empty() {
                changes.push("mcpServers.blender: rewritten".to_owned());
            }
        }
    }
    if changes.is_empty() {
        return Ok((document, changes));
    }
    servers.insert("blender".to_owned(), wanted);
    let others: Vec<&String> = servers.keys().filter(|name| *name != "blender").collect();
    if !others.is_empty() {
        changes.push(format!(
            "kept the other servers: {}",
            others
                .iter()
                .map(|name| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((document, changes))
}

/// Replaces `path` with `bytes` through a new file renamed over it (keeping the old file's
/// mode), so a failure never leaves half a file.
fn write_replacing(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mode = std::fs::metadata(path).map_or(0o644, |meta| meta.permissions().mode() & 0o777);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".rpb-{}", std::process::id()));
    let temporary = PathBuf::from(name);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

/// The `.mcp.json` document for the blender-mcp server (the pinned `mcp-for-blender` release,
/// through `uvx`) through the tunnel.
pub(crate) fn mcp_json(port: u16) -> serde_json::Value {
    json!({
        "mcpServers": {
            "blender": {
                "command": "uvx",
                "args": mcp::UVX_ARGS,
                "env": {"BLENDER_HOST": "127.0.0.1", "BLENDER_PORT": port.to_string()},
            }
        }
    })
}
