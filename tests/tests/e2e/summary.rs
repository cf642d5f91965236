//! The figures of the fault suite: each scenario records what it injected, what survived and
//! what was checked afterwards, and prints its table (and the suite's table so far) to the test
//! log.

use std::fmt::Write as _;
use std::sync::Mutex;

/// One line of the summary.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) fault: String,
    pub(crate) injected: u32,
    pub(crate) survived: u32,
    pub(crate) checked: String,
}

static SUITE: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// The figures of one scenario group, with the failures that make it fail.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Summary {
    /// Records one kind of fault: `outcomes` holds one entry per injection, `Err` describing
    /// what went wrong (not survived).
    pub(crate) fn record(
        &mut self,
        fault: &str,
        checked: &str,
        outcomes: impl IntoIterator<Item = Result<(), String>>,
    ) {
        let mut row = Row {
            fault: fault.to_owned(),
            injected: 0,
            survived: 0,
            checked: checked.to_owned(),
        };
        for outcome in outcomes {
            row.injected += 1;
            match outcome {
                Ok(()) => row.survived += 1,
                Err(why) => self.failures.push(format!("{fault}: {why}")),
            }
        }
        self.rows.push(row);
    }

    /// Records a single injection.
    pub(crate) fn record_one(&mut self, fault: &str, checked: &str, outcome: Result<(), String>) {
        self.record(fault, checked, [outcome]);
    }

    /// Prints the table, adds it to the suite's, and fails with every failure listed.
    pub(crate) fn finish(self, title: &str) {
        eprintln!("\n{title}\n{}", table(&self.rows));
        let mut suite = SUITE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        suite.extend(self.rows.iter().cloned());
        eprintln!("suite so far\n{}", table(&suite));
        drop(suite);
        assert!(
            self.failures.is_empty(),
            "{} fault(s) not survived:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|row| row.fault.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "| {:width$} | injected | survived | data checked\n|{}|----------|----------|-------------\n",
        "fault",
        "-".repeat(width + 2)
    );
    let (mut injected, mut survived) = (0, 0);
    for row in rows {
        injected += row.injected;
        survived += row.survived;
        let _ = writeln!(
            out,
            "| {:width$} | {:>8} | {:>8} | {}",
            row.fault, row.injected, row.survived, row.checked
        );
    }
    let _ = write!(
        out,
        "| {:width$} | {injected:>8} | {survived:>8} |",
        "total"
    );
    out
}

/// An error's message with every source, as a user would see it.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Checks that `text` never shows any of `secrets`.
pub(crate) fn no_secret(text: &str, secrets: &[&str]) -> Result<(), String> {
    match secrets.iter().find(|secret| text.contains(**secret)) {
        Some(secret) => Err(format!(
            "a secret appears in {:?}",
            text.replace(secret, "<SECRET>")
        )),
        None => Ok(()),
    }
}
