//! What goes to `tracing`: the permission warning is logged, secrets never are.

use std::fmt::Write as _;
use std::fs;
use std::sync::{Arc, Mutex};

use project_store::ConfigKey;
use project_store::secrecy::SecretString;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::support::{chmod, store_in};

/// A minimal subscriber that records every event and span field as text.
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("SPAN {}", span.metadata().name());
        span.record(&mut Fields(&mut line));
        self.lines.lock().unwrap().push(line);
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = String::from("RECORD");
        values.record(&mut Fields(&mut line));
        self.lines.lock().unwrap().push(line);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = format!("{}", event.metadata().level());
        event.record(&mut Fields(&mut line));
        self.lines.lock().unwrap().push(line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn permission_warning_is_logged_and_secrets_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        store.init().unwrap();
        let secret = SecretString::from("rpa_TOPSECRET");
        store.set_secret(ConfigKey::ApiKey, &secret).unwrap();
        store
            .set_secret(ConfigKey::VncPassword, &SecretString::from("vnc_TOPSECRET"))
            .unwrap();
        chmod(store.env_file(), 0o644);
        let config = store.load_config().unwrap();
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    });
    let lines = capture.lines.lock().unwrap().join("\n");
    assert!(
        !lines.contains("TOPSECRET"),
        "a secret reached the logs:\n{lines}"
    );
    let path = store.env_file().display().to_string();
    let warning = lines
        .lines()
        .find(|l| l.starts_with(&Level::WARN.to_string()) && l.contains("chmod 600"))
        .unwrap_or_else(|| panic!("no permission warning logged:\n{lines}"));
    assert!(warning.contains(&path), "{warning}");
    assert!(
        fs::read_to_string(store.env_file())
            .unwrap()
            .contains("rpa_TOPSECRET")
    );
}
