//! Printing: the tracing subscriber, command outcomes (text or JSON) and progress display.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use blender_session::seams::ProgressFn;
use blender_session::{Event, Step};
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

use crate::global::Global;

/// Exit code: the command failed.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit code: the pod (or Blender, or its sshd) did not become ready in time.
pub(crate) const EXIT_NOT_READY: u8 = 3;
/// Exit code: the pod's host machine has no free GPU.
pub(crate) const EXIT_NO_GPU: u8 = 4;

/// Installs the stderr subscriber: warnings by default, `-v` info, `-vv` debug, `-q` errors;
/// `RUST_LOG` overrides. The background tunnel logs at info to its log file.
pub(crate) fn install_tracing(global: &Global, daemon: bool) {
    let level = match (global.quiet, global.verbose, daemon) {
        (true, _, false) => "error",
        (false, 0, false) => "warn",
        (_, 1, _) | (_, _, true) => "info",
        (false, _, _) => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!daemon && std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Prints a hint on stderr (as errors' hints are), unless `-q`.
#[expect(clippy::print_stderr, reason = "hints for people go to stderr")]
pub(crate) fn hint(global: &Global, text: &str) {
    if !global.quiet {
        eprintln!("hint: {text}");
    }
}

/// Prints a few lines for people on stderr before a command acts (what it is about to do),
/// unless `-q` or `--json`.
#[expect(clippy::print_stderr, reason = "notices for people go to stderr")]
pub(crate) fn notice(global: &Global, text: &str) {
    if !global.quiet && !global.json {
        eprintln!("{text}");
    }
}

/// What a command produced: a JSON document, the text for people, and the exit code.
pub(crate) struct Outcome {
    pub(crate) json: serde_json::Value,
    pub(crate) human: String,
    pub(crate) code: u8,
}

impl Outcome {
    pub(crate) fn new(json: serde_json::Value, human: impl Into<String>) -> Self {
        Self {
            json,
            human: human.into(),
            code: 0,
        }
    }

    pub(crate) fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}

/// Spinners and bars on stderr, only when stdout is a terminal and neither `--json` nor `-q`
/// is given.
#[derive(Clone)]
pub(crate) struct Progress {
    enabled: bool,
    /// Host-key notices are printed unless `-q`, bar or no bar.
    notices: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(crate) fn new(global: &Global) -> Self {
        Self {
            enabled: !global.json && !global.quiet && std::io::stdout().is_terminal(),
            notices: !global.quiet,
            bar: None,
        }
    }

    /// Whether bars are shown at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// A spinner showing the step and the elapsed time.
    pub(crate) fn spinner(&self, message: &str) -> Self {
        let bar = self.enabled.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} [{elapsed:>3}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(message.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            enabled: self.enabled,
            notices: self.notices,
            bar,
        }
    }

    /// Shows a lifecycle event.
    pub(crate) fn event(&self, event: &Event) {
        if matches!(event.step, Step::HostKey | Step::Move | Step::Terminate) && self.notices {
            // A fingerprint to compare, or a pod that moved or ended, stays on screen, not in a
            // spinner that moves on.
            let line = format!("{}: {}", event.step, event.detail);
            match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {}", event.step, event.detail));
        }
    }

    /// A byte bar for a transfer of `name`, fed by the returned callback.
    pub(crate) fn transfer(&self, name: &str) -> (Self, Option<ProgressFn>) {
        let Some(bar) = self.enabled.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{elapsed:>3}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(name.to_owned());
            bar
        }) else {
            return (self.clone(), None);
        };
        let feed = bar.clone();
        let callback: ProgressFn = Arc::new(move |done, total| {
            feed.set_length(total);
            feed.set_position(done);
        });
        (
            Self {
                enabled: self.enabled,
                notices: self.notices,
                bar: Some(bar),
            },
            Some(callback),
        )
    }

    /// Removes the spinner or bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
