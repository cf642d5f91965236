//! Files and projects: `project`, `push`, `pull`, `save` and `open`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use project_store::{OnExisting, ProjectName};
use serde_json::json;

use crate::ctx::{Ctx, PodArgs, attach};
use crate::output::Outcome;

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ProjectCommand {
    /// Create a project folder.
    New {
        /// The project's name (letters, digits, `-`, `_`, `.`).
        name: String,
    },
    /// List the projects (with `--remote`, the .blend files in the pod's project folders).
    List {
        /// List the `.blend` files under the pod root's `projects/` instead (size, time);
        /// `rpb pull projects/NAME/FILE` downloads one.
        #[arg(long)]
        remote: bool,
        #[command(flatten)]
        pod: PodArgs,
    },
    /// A project's saved versions and files.
    Show {
        /// The project's name.
        name: String,
    },
}

pub(crate) async fn project(ctx: &Ctx, command: ProjectCommand) -> anyhow::Result<Outcome> {
    match command {
        ProjectCommand::List { remote: true, pod } => remote_blends(ctx, &pod).await,
        ProjectCommand::New { name } => {
            let name = ProjectName::new(name)?;
            let project = ctx.store.create_project(&name, OnExisting::Reuse)?;
            Ok(Outcome::new(
                json!({"project": name.as_str(), "dir": project.dir}),
                format!("project {name} at {}", project.dir.display()),
            ))
        }
        ProjectCommand::List { remote: false, .. } => {
            let names = ctx.store.list_projects()?;
            let mut rows = Vec::new();
            let mut human = String::new();
            for name in &names {
                let latest = ctx.store.latest_version(name)?;
                let count = ctx.store.versions(name)?.len();
                let _ = writeln!(
                    human,
                    "{:<24} {count:>3} version(s){}",
                    name.as_str(),
                    latest
                        .as_ref()
                        .map(|entry| format!(", latest {}", entry.name))
                        .unwrap_or_default()
                );
                rows.push(json!({
                    "project": name.as_str(),
                    "versions": count,
                    "latest": latest.map(|entry| entry.name),
                }));
            }
            if names.is_empty() {
                human.push_str("no projects yet: rpb project new NAME");
            }
            Ok(Outcome::new(json!({ "projects": rows }), human))
        }
        ProjectCommand::Show { name } => {
            let name = ProjectName::new(name)?;
            let project = ctx.store.project(&name)?;
            let mut human = format!("project {name} at {}\n", project.dir.display());
            for entry in project.versions() {
                let _ = writeln!(
                    human,
                    "  {:<40} {:>10} B  {}  {}",
                    entry.name,
                    entry.size,
                    entry.saved_at,
                    &entry.sha256.get(..12).unwrap_or_default()
                );
            }
            Ok(Outcome::new(
                json!({
                    "project": name.as_str(),
                    "dir": project.dir,
                    "latest": project.manifest.latest,
                    "files": project.manifest.files,
                }),
                human,
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// work on the pod

#[derive(Debug, Clone, Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The local file.
    local: PathBuf,
    /// Where on the pod [default: the same file name in the pod root].
    remote: Option<String>,
}

pub(crate) async fn push(ctx: &Ctx, args: PushArgs) -> anyhow::Result<Outcome> {
    let progress = ctx.progress().spinner("connecting");
    let (orchestrator, session) = attach(ctx, &args.pod, &progress).await?;
    progress.finish();
    let name = args
        .local
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .context("the local path names no file")?;
    let remote = args.remote.unwrap_or_else(|| {
        format!(
            "{}/{name}",
            orchestrator.settings().pod_root.trim_end_matches('/')
        )
    });
    let (bar, callback) = progress.transfer(&name);
    let result = orchestrator
        .push(&session, &args.local, &remote, callback)
        .await;
    bar.finish();
    let done = result?;
    Ok(Outcome::new(
        json!({"local": args.local, "remote": remote, "bytes": done.bytes, "sha256": done.sha256}),
        format!(
            "uploaded {} → {remote} ({} bytes, sha256 {} verified)",
            args.local.display(),
            done.bytes,
            done.sha256.get(..12).unwrap_or_default()
        ),
    ))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PullArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The file on the pod (relative paths are under the pod root).
    remote: String,
    /// Where to write it [default: its file name in the current folder].
    local: Option<PathBuf>,
}

pub(crate) async fn pull(ctx: &Ctx, args: PullArgs) -> anyhow::Result<Outcome> {
    let progress = ctx.progress().spinner("connecting");
    let (orchestrator, session) = attach(ctx, &args.pod, &progress).await?;
    progress.finish();
    let remote = if args.remote.starts_with('/') {
        args.remote.clone()
    } else {
        format!(
            "{}/{}",
            orchestrator.settings().pod_root.trim_end_matches('/'),
            args.remote
        )
    };
    let name = remote.rsplit('/').next().unwrap_or("download").to_owned();
    let local = args.local.unwrap_or_else(|| PathBuf::from(&name));
    let (bar, callback) = progress.transfer(&name);
    let result = orchestrator.pull(&session, &remote, &local, callback).await;
    bar.finish();
    let done = result?;
    Ok(Outcome::new(
        json!({"remote": remote, "local": local, "bytes": done.bytes, "sha256": done.sha256}),
        format!(
            "downloaded {remote} → {} ({} bytes, sha256 {} verified)",
            local.display(),
            done.bytes,
            done.sha256.get(..12).unwrap_or_default()
        ),
    ))
}

/// How long ago a Unix time was, for people (`3 h ago`).
fn age(unix_seconds: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let seconds = (now - unix_seconds).max(0.0);
    let (value, unit) = if seconds < 120.0 {
        (seconds, "s")
    } else if seconds < 7200.0 {
        (seconds / 60.0, "min")
    } else if seconds < 172_800.0 {
        (seconds / 3600.0, "h")
    } else {
        (seconds / 86_400.0, "days")
    };
    format!("{value:.0} {unit} ago")
}

/// `project list --remote`: what the pod holds under its project folders.
async fn remote_blends(ctx: &Ctx, pod: &PodArgs) -> anyhow::Result<Outcome> {
    let progress = ctx.progress().spinner("connecting");
    let (orchestrator, session) = attach(ctx, pod, &progress).await?;
    progress.finish();
    let files = orchestrator.remote_blends(&session).await?;
    let mut human = String::new();
    for file in &files {
        let _ = writeln!(
            human,
            "{:<48} {:>12} B  {}",
            file.path,
            file.size,
            age(file.modified)
        );
    }
    if files.is_empty() {
        human.push_str("no .blend files under the pod's projects/ folders");
    } else {
        human.push_str("download one with: rpb pull projects/NAME/FILE");
    }
    Ok(Outcome::new(
        json!({"pod_id": session.pod_id, "files": files}),
        human,
    ))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SaveArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The project to save into (created if missing).
    #[arg(long, short)]
    project: String,
    /// The version's stem.
    #[arg(long, default_value = "scene")]
    name: String,
}

pub(crate) async fn save(ctx: &Ctx, args: SaveArgs) -> anyhow::Result<Outcome> {
    let project = ProjectName::new(&args.project)?;
    ctx.store.create_project(&project, OnExisting::Reuse)?;
    let progress = ctx.progress().spinner("saving the scene");
    let attached = attach(ctx, &args.pod, &progress).await;
    let result = match attached {
        Ok((orchestrator, session)) => {
            orchestrator
                .save(&session, &ctx.store, &project, &args.name)
                .await
        }
        Err(error) => {
            progress.finish();
            return Err(error);
        }
    };
    progress.finish();
    let entry = result?;
    let path = ctx.store.project(&project)?.path_of(&entry);
    Ok(Outcome::new(
        json!({
            "project": project.as_str(),
            "name": entry.name,
            "path": path,
            "size": entry.size,
            "sha256": entry.sha256,
        }),
        format!(
            "saved {} ({} bytes, sha256 {})",
            path.display(),
            entry.size,
            entry.sha256.get(..12).unwrap_or_default()
        ),
    ))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OpenArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The project.
    #[arg(long, short)]
    project: String,
    /// `latest`, a file name or a stem.
    #[arg(default_value = "latest")]
    version: String,
}

pub(crate) async fn open(ctx: &Ctx, args: OpenArgs) -> anyhow::Result<Outcome> {
    let project = ProjectName::new(&args.project)?;
    let progress = ctx.progress().spinner("opening");
    let attached = attach(ctx, &args.pod, &progress).await;
    let result = match attached {
        Ok((orchestrator, session)) => {
            orchestrator
                .open(&session, &ctx.store, &project, &args.version)
                .await
        }
        Err(error) => {
            progress.finish();
            return Err(error);
        }
    };
    progress.finish();
    let remote = result?;
    Ok(Outcome::new(
        json!({"project": project.as_str(), "remote": remote}),
        format!("Blender opened {remote}"),
    ))
}
