//! `doctor`: what this machine and workspace have, and what to do about what is missing.

use std::fmt::Write as _;
use std::path::PathBuf;

use blender_session::profile::Profile;
use project_store::EnvFileSource;
use serde_json::json;

use crate::ctx::Ctx;
use crate::output::Outcome;

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<String>,
}

#[expect(clippy::too_many_lines, reason = "one check after the other")]
pub(crate) async fn doctor(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut checks = Vec::new();
    let env_file = ctx.store.env_file().to_owned();
    let (source, why) = env_file_source(ctx);
    let ignored = ctx.store.ignored_env_file();
    checks.push(Check {
        name: "env file",
        ok: true,
        detail: format!(
            "{} ({why}){}",
            env_file.display(),
            if ignored.is_some() {
                "; ./.env in the current folder is ignored"
            } else {
                ""
            }
        ),
        fix: None,
    });
    let config = ctx.store.load_config();
    checks.push(match &config {
        Ok(config) => {
            let loose = config
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            Check {
                name: "config",
                ok: loose.is_empty(),
                detail: if loose.is_empty() {
                    format!("{} reads cleanly", env_file.display())
                } else {
                    loose.join("; ")
                },
                fix: (!loose.is_empty())
                    .then(|| format!("edit {} (chmod 600 it if it is loose)", env_file.display())),
            }
        }
        Err(error) => Check {
            name: "config",
            ok: false,
            detail: error.to_string(),
            fix: Some("run `rpb init`".into()),
        },
    });
    let profile = ctx.profile();
    match &profile {
        Ok(profile) => {
            let key_set = profile.config.api_key.is_some();
            checks.push(Check {
                name: "api key",
                ok: key_set,
                detail: if key_set {
                    "set".into()
                } else {
                    "RUNPOD_API_KEY is not set".into()
                },
                fix: (!key_set)
                    .then(|| "put RUNPOD_API_KEY in .env or run `rpb init --api-key-stdin`".into()),
            });
            checks.push(ssh_key_check(profile));
            if key_set {
                checks.push(api_check(profile).await);
            }
            checks.push(Check {
                name: "vnc password",
                ok: profile.config.vnc_password.is_some(),
                detail: if profile.config.vnc_password.is_some() {
                    "set".into()
                } else {
                    "VNC_PASSWORD is not set".into()
                },
                fix: profile
                    .config
                    .vnc_password
                    .is_none()
                    .then(|| "run `rpb init` (it generates one)".into()),
            });
        }
        Err(error) => checks.push(Check {
            name: "settings",
            ok: false,
            detail: format!("{error:#}"),
            fix: Some(format!("fix the value in {}", env_file.display())),
        }),
    }
    for (program, package) in [("ssh", "openssh-client"), ("ssh-keygen", "openssh-client")] {
        let found = find_program(program);
        checks.push(Check {
            name: "local tool",
            ok: found.is_some(),
            detail: found.map_or_else(
                || format!("{program} not found"),
                |path| format!("{program} at {}", path.display()),
            ),
            fix: found_fix(program, package),
        });
    }
    let failed = checks.iter().filter(|check| !check.ok).count();
    let mut human = String::new();
    for check in &checks {
        let _ = writeln!(
            human,
            "{} {:<13} {}",
            if check.ok { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        );
        if let Some(fix) = &check.fix {
            let _ = writeln!(human, "     fix: {fix}");
        }
    }
    let _ = write!(
        human,
        "{}",
        if failed == 0 {
            "everything looks right".to_owned()
        } else {
            format!("{failed} problem(s)")
        }
    );
    let rows: Vec<_> = checks
        .iter()
        .map(|check| {
            json!({"check": check.name, "ok": check.ok, "detail": check.detail, "fix": check.fix})
        })
        .collect();
    let document = json!({
        "ok": failed == 0,
        "env_file": {"path": env_file, "source": source, "ignored": ignored},
        "checks": rows,
    });
    Ok(Outcome::new(document, human).with_code(if failed == 0 {
        0
    } else {
        crate::output::EXIT_ERROR
    }))
}

/// Why this `.env` is the one in use: a JSON name and the words for people.
fn env_file_source(ctx: &Ctx) -> (&'static str, String) {
    match ctx.store.env_file_source() {
        EnvFileSource::Explicit => ("env_file_option", "given with --env-file".into()),
        EnvFileSource::ExplicitRoot => (
            "workspace_option",
            format!("the .env of --workspace {}", ctx.store.root().display()),
        ),
        EnvFileSource::RpbHome => ("rpb_home", "the .env of the workspace in RPB_HOME".into()),
        _ => (
            "default_workspace",
            "the .env of the default workspace".into(),
        ),
    }
}

fn found_fix(program: &str, package: &str) -> Option<String> {
    find_program(program)
        .is_none()
        .then(|| format!("sudo apt-get install -y {package}"))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn ssh_key_check(profile: &Profile) -> Check {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(key) = profile.ssh_key() else {
        return Check {
            name: "ssh key",
            ok: false,
            detail: "no SSH key path and no home directory".into(),
            fix: Some("set RUNPOD_SSH_KEY in .env".into()),
        };
    };
    match std::fs::metadata(&key) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Check {
            name: "ssh key",
            ok: false,
            detail: format!(
                "{} has mode {:o}; ssh refuses keys others can read",
                key.display(),
                meta.permissions().mode() & 0o777
            ),
            fix: Some(format!("chmod 600 {}", key.display())),
        },
        Ok(_) => Check {
            name: "ssh key",
            ok: true,
            detail: format!("{} (mode 600)", key.display()),
            fix: None,
        },
        Err(_) => Check {
            name: "ssh key",
            ok: false,
            detail: format!("{} does not exist", key.display()),
            fix: Some("run `rpb init` (it generates and registers one)".into()),
        },
    }
}

async fn api_check(profile: &Profile) -> Check {
    let result = async {
        let client = profile.client()?;
        let pods = client
            .list_pods(&runpod_api::params::ListPodsParams::default())
            .await?;
        anyhow::Ok((client.base_url().to_owned(), pods.len()))
    }
    .await;
    match result {
        Ok((url, count)) => Check {
            name: "api",
            ok: true,
            detail: format!("{url} answers; {count} pod(s) on the account"),
            fix: None,
        },
        Err(error) => Check {
            name: "api",
            ok: false,
            detail: format!("{error:#}"),
            fix: Some("check RUNPOD_API_KEY and RUNPOD_API_URL, and the network".into()),
        },
    }
}
