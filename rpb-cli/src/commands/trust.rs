//! `trust`: the SSH host key pinned for a pod, what the API says the pod was created with, and
//! resetting the pin.

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use crate::ctx::{Ctx, PodArgs, loose_settings, pod_id_of};
use crate::output::Outcome;

#[derive(Debug, Clone, Args)]
pub(crate) struct TrustArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// Forget the pinned key. The next connection pins the key the pod was created with (read
    /// from the API) or, for a pod rpb did not create, trusts the key it meets and says so.
    /// Only after you know why the key changed (the pod was rebuilt): a changed key is also
    /// what a man in the middle looks like.
    #[arg(long)]
    reset: bool,
}

pub(crate) async fn trust(ctx: &Ctx, args: TrustArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.pod.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let known_hosts = ctx.store.state_dir().join("known_hosts");
    let pinned = blocking({
        let (file, name) = (known_hosts.clone(), pod_id.clone());
        move || Ok(pod_tunnel::known_host(&file, &name)?)
    })
    .await
    .with_context(|| format!("reading the pin of pod {pod_id}"))?;

    // What the API says the pod was created with; the pin can be checked against it. Not
    // needed to reset, so a failure is reported, not fatal.
    let api = match profile.orchestrator_with(&ctx.store, loose_settings(&profile)) {
        Ok(orchestrator) => match orchestrator.status(&pod_id, None).await {
            Ok(status) => Ok(status.pod.host_public_key.as_deref().and_then(|key| {
                pod_tunnel::parse_public_key(key).map(|(_, blob)| pod_tunnel::fingerprint(&blob))
            })),
            Err(error) => Err(format!("{error:#}")),
        },
        Err(error) => Err(format!("{error:#}")),
    };

    let removed = if args.reset {
        blocking({
            let (file, name) = (known_hosts.clone(), pod_id.clone());
            move || Ok(pod_tunnel::forget_host(&file, &name)?)
        })
        .await
        .with_context(|| format!("forgetting the pin of pod {pod_id}"))?
    } else {
        0
    };

    let mut human = match &pinned {
        Some(pin) => format!(
            "pod {pod_id}: pinned {} {} (line {} of {})",
            pin.key_type,
            pin.fingerprint,
            pin.line,
            known_hosts.display()
        ),
        None => format!(
            "pod {pod_id}: no host key pinned in {}",
            known_hosts.display()
        ),
    };
    match &api {
        Ok(Some(fingerprint)) => {
            let agreement = match &pinned {
                Some(pin) if &pin.fingerprint == fingerprint => " (the pinned key)",
                Some(_) => " (NOT the pinned key: find out why before you reset the pin)",
                None => " (pinned at the next connection)",
            };
            let _ = write!(
                human,
                "\nthe API says the pod was created with {fingerprint}{agreement}"
            );
        }
        Ok(None) => human.push_str(
            "\nthe pod carries no host key from rpb (rpb did not create it): its key is trusted \
             on first contact, and strictly afterwards",
        ),
        Err(error) => {
            let _ = write!(human, "\ncould not ask the API: {error}");
        }
    }
    if args.reset {
        if removed > 0 {
            let plural = if removed == 1 { "y" } else { "ies" };
            let _ = write!(
                human,
                "\nforgot the pin ({removed} entr{plural}); the next connection pins again"
            );
        } else {
            human.push_str("\nnothing to forget");
        }
    }
    let document = json!({
        "pod_id": pod_id,
        "known_hosts": known_hosts,
        "pinned": pinned.as_ref().map(|pin| json!({
            "key_type": pin.key_type,
            "fingerprint": pin.fingerprint,
            "line": pin.line,
            "names": pin.names,
        })),
        "api_fingerprint": api.as_ref().ok().cloned().flatten(),
        "api_error": api.as_ref().err(),
        "reset": args.reset,
        "removed": removed,
    });
    Ok(Outcome::new(document, human))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work).await?
}
