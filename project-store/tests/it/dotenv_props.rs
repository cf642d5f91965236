//! Property tests: a single-key update keeps every other byte and re-parses to the new value.

use project_store::dotenv::Document;
use proptest::prelude::*;

const KEYS: [&str; 5] = ["A", "RUNPOD_POD_ID", "VNC_PASSWORD", "k.x", "_b"];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS.as_slice()).prop_map(str::to_owned),
        1 => "[A-Za-z_][A-Za-z0-9_.]{0,6}",
    ]
}

fn free_text() -> impl Strategy<Value = String> {
    // Any characters except a line feed (lines are generated separately).
    any::<String>().prop_map(|s| s.replace('\n', ""))
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_./:@+=,%~-]{0,12}", "[ -~]{0,12}", free_text(),]
}

/// One line (without its terminator) in one of the shapes people write.
fn line() -> impl Strategy<Value = String> {
    let entry = (
        "[ \t]{0,2}",
        proptest::option::of(Just("export ")),
        key(),
        "[ \t]{0,2}=[ \t]{0,2}",
        prop_oneof![
            "[A-Za-z0-9_./:@+=,%~-]{0,12}",
            "'[^'\\\\\n\r]{0,10}'",
            "\"([^\"\\\\\n\r]|\\\\[nrt\"\\\\$'q]){0,10}\"",
            "[^\n\r]{0,12}",
        ],
        prop_oneof![
            Just(String::new()),
            "[ \t]{1,2}#[^\n\r]{0,8}",
            "#[^\n\r]{0,5}"
        ],
    )
        .prop_map(|(indent, export, key, equals, value, comment)| {
            format!(
                "{indent}{}{key}{equals}{value}{comment}",
                export.unwrap_or("")
            )
        });
    prop_oneof![
        4 => entry,
        1 => "[ \t]*#[^\n]{0,20}",
        1 => "[ \t]{0,3}",
        1 => free_text(),
    ]
}

/// A whole file: lines with `\n` or `\r\n`, maybe a BOM, maybe no final newline.
fn content() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((line(), prop_oneof![Just("\n"), Just("\r\n")]), 0..12),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, bom, final_newline)| {
            let mut out = String::new();
            if bom {
                out.push('\u{feff}');
            }
            let count = lines.len();
            for (index, (text, eol)) in lines.into_iter().enumerate() {
                out.push_str(&text);
                if index + 1 < count || final_newline {
                    out.push_str(eol);
                }
            }
            out.into_bytes()
        })
}

fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn update_keeps_every_other_byte(content in content(), key in key(), value in value_text()) {
        let before = Document::parse(&content);
        let target_line = before.entries().filter(|e| e.key() == key).last().map(|e| e.line());
        let mut after = before.clone();
        after.set(&key, &value).unwrap();
        let new_bytes = after.to_bytes();

        // Re-parsing the written bytes yields the new value.
        let reparsed = Document::parse(&new_bytes);
        prop_assert_eq!(reparsed.get(&key), Some(value.as_str()));

        let old_lines = split_lines(&content);
        let new_lines = split_lines(&new_bytes);
        if let Some(line) = target_line {
                // Same lines, byte for byte, except the one that held the key.
                prop_assert_eq!(old_lines.len(), new_lines.len());
                for (index, (old, new)) in old_lines.iter().zip(&new_lines).enumerate() {
                    if index + 1 != line {
                        prop_assert_eq!(old, new, "line {} changed", index + 1);
                    }
                }
                // That line keeps its ending.
                let old = old_lines[line - 1];
                let new = new_lines[line - 1];
                prop_assert_eq!(old.ends_with(b"\n"), new.ends_with(b"\n"));
                prop_assert_eq!(old.ends_with(b"\r\n"), new.ends_with(b"\r\n"));
        } else {
                // The old content is kept as a prefix and one line is added.
                prop_assert!(new_bytes.starts_with(&content));
                prop_assert_eq!(new_lines.len(), old_lines.len() + 1);
        }

        // Every other key keeps its value, and no new problem appears.
        for entry in before.effective_entries() {
            if entry.key() != key {
                prop_assert_eq!(reparsed.get(entry.key()), Some(entry.value()));
            }
        }
        let old_issues: Vec<_> = before.issues().into_iter().filter(|i| Some(i.line) != target_line).collect();
        let new_issues: Vec<_> = reparsed.issues().into_iter().filter(|i| Some(i.line) != target_line && i.line <= old_lines.len()).collect();
        prop_assert_eq!(old_issues, new_issues);
    }

    #[test]
    fn parse_is_lossless(content in proptest::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(Document::parse(&content).to_bytes(), content);
    }

    #[test]
    fn any_value_round_trips_alone(key in key(), value in any::<String>()) {
        let mut doc = Document::default();
        doc.set(&key, &value).unwrap();
        let reparsed = Document::parse(&doc.to_bytes());
        prop_assert_eq!(reparsed.get(&key), Some(value.as_str()));
    }
}
