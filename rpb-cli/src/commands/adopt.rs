//! `adopt`: give a pod rpb did not create (the original scripts', a console pod) rpb's boot hook,
//! so its SSH host key survives restarts; `--undo` gives its own start command back.

use std::fmt::Write as _;

use anyhow::Context as _;
use blender_session::orchestrator::AdoptOptions;
use clap::Args;
use serde_json::json;

use crate::ctx::{Ctx, PodArgs, loose_settings, pod_id_of, sink};
use crate::output::Outcome;

#[derive(Debug, Clone, Args)]
pub(crate) struct AdoptArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// Give the pod the start command it had before `rpb adopt` (from the next start on).
    #[arg(long, conflicts_with_all = ["fallback", "dry_run"])]
    undo: bool,
    /// What the pod must run after the hook, when it has no start command of its own and its
    /// image is not RunPod's (whose images start from /start.sh).
    #[arg(long, value_name = "COMMAND")]
    fallback: Option<String>,
    /// Say what adopting would do, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn adopt(ctx: &Ctx, args: AdoptArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.pod.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let progress = ctx.progress().spinner("adopting the pod");
    let events = sink(&progress);
    if args.undo {
        let restored = orchestrator.undo_adopt(&pod_id, &events).await;
        progress.finish();
        return Ok(undone(&pod_id, &restored?));
    }

    let status = orchestrator.status(&pod_id, None).await;
    let pod = match status {
        Ok(status) => status.pod,
        Err(error) => {
            progress.finish();
            return Err(error.into());
        }
    };
    let root = if profile.pod_root_set {
        profile.pod_root.clone()
    } else {
        pod.volume_path
            .clone()
            .unwrap_or_else(|| profile.pod_root.clone())
    };
    let own = if pod.start_command.trim().is_empty() {
        "the image's own".to_owned()
    } else {
        format!("`{}`", pod.start_command)
    };
    let plan = format!(
        "rpb adopt, on pod {pod_id} (now starting with {own}, its volume at {}):\n  \
         1. verifies its SSH host key (a first contact is trusted and recorded, fingerprint shown)\n  \
         2. runs rpb's setup on the volume, under {root}/rpb\n  \
         3. saves the host key it verified on the volume, so every start restores it\n  \
         4. makes its start command rpb's boot hook followed by {own} (from the next start)\n\
         It leaves alone your files on the volume, the processes running now and the image.\n\
         Undo: rpb adopt --undo --pod-id {pod_id}",
        pod.volume_path.as_deref().unwrap_or("(no volume)")
    );
    if args.dry_run {
        progress.finish();
        return Ok(Outcome::new(
            json!({
                "pod_id": pod_id,
                "dry_run": true,
                "start_command": pod.start_command,
                "volume_path": pod.volume_path,
                "pod_root": root,
            }),
            plan,
        ));
    }
    ctx.notice(&plan);

    let mut options = AdoptOptions::new();
    options.detect_pod_root = !profile.pod_root_set;
    options.fallback = args.fallback.clone();
    let report = orchestrator.adopt(&pod_id, &options, &events).await;
    progress.finish();
    let report = report?;
    let mut root_saved = false;
    if !report.already_adopted && report.pod_root != profile.pod_root {
        ctx.store
            .set_env_var("RPB_POD_ROOT", &report.pod_root)
            .with_context(|| format!("saving RPB_POD_ROOT={} in .env", report.pod_root))?;
        root_saved = true;
    }
    let text = adopted_text(&pod_id, &report, root_saved, ctx);
    Ok(Outcome::new(
        json!({
            "pod_id": report.pod_id,
            "pod_root": report.pod_root,
            "pod_root_saved": root_saved,
            "already_adopted": report.already_adopted,
            "previous_start_command": report.previous_start_command,
            "start_command": report.start_command,
            "host_key": report.host_key,
            "record": report.record,
        }),
        text,
    ))
}

fn undone(pod_id: &str, restored: &str) -> Outcome {
    let shown = if restored.is_empty() {
        "the image's own"
    } else {
        restored
    };
    Outcome::new(
        json!({"pod_id": pod_id, "undone": true, "start_command": restored}),
        format!(
            "pod {pod_id} starts with its previous command again from its next start: \
             {shown}\nits host key will then change at every start again (rpb refuses a \
             changed key: `rpb trust --pod-id {pod_id} --reset` after each restart)"
        ),
    )
}

fn adopted_text(
    pod_id: &str,
    report: &blender_session::orchestrator::AdoptReport,
    root_saved: bool,
    ctx: &Ctx,
) -> String {
    if report.already_adopted {
        return format!("pod {pod_id} already runs rpb's boot hook: nothing changed");
    }
    let mut text = format!(
        "adopted pod {pod_id}: from its next start it runs rpb's boot hook, which restores its \
         host key {}, then its own start command",
        report.host_key.as_deref().unwrap_or("(no ed25519 key)")
    );
    if root_saved {
        let _ = write!(
            text,
            "\nits volume is at {}: saved RPB_POD_ROOT={} in {}",
            report.pod_root,
            report.pod_root,
            ctx.store.env_file().display()
        );
    }
    let _ = write!(text, "\nundo: rpb adopt --undo --pod-id {pod_id}");
    text
}
