//! Quoting words and paths for a POSIX shell (`sh`, `dash`, `bash`, …), for command lines run
//! on a remote host with [`Session::command`](crate::Session::command).
//!
//! A word made only of `A-Z a-z 0-9 _ . / : @ % + = , -` is left as it is, unless an `=`
//! comes before any `/` (so that `NAME=value` can never turn into a variable assignment);
//! every other word is single-quoted, with each `'` written as `'\''`. The empty word becomes
//! `''`.
//!
//! ```
//! use pod_tunnel::shell;
//!
//! assert_eq!(shell::quote("/runpod/projects/demo"), "/runpod/projects/demo");
//! assert_eq!(shell::quote("it's $HOME"), r"'it'\''s $HOME'");
//! assert_eq!(shell::quote("PATH=/tmp"), "'PATH=/tmp'");
//! assert_eq!(shell::join(["ls", "-l", "my scene.blend"]), "ls -l 'my scene.blend'");
//! ```

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// Bytes that never need quoting (when no `=` comes before a `/`).
fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_./:@%+=,-".contains(&b)
}

/// Whether `word` can go to the shell as it is.
fn is_plain(word: &str) -> bool {
    let bytes = word.as_bytes();
    // `NAME=value` in command position is an assignment, not a word: quote any `=` that a `/`
    // does not precede (a name never holds a `/`).
    let assignment_like = match (word.find('='), word.find('/')) {
        (Some(eq), Some(slash)) => eq < slash,
        (Some(_), None) => true,
        (None, _) => false,
    };
    !bytes.is_empty() && !assignment_like && bytes.iter().all(|&b| is_safe(b))
}

/// `word` as one shell word that evaluates to exactly `word`.
///
/// Left as it is when made only of `A-Z a-z 0-9 _ . / : @ % + = , -` with no `=` before a
/// `/`; otherwise single-quoted (`'` becomes `'\''`). The empty string becomes `''`.
///
/// ```
/// use pod_tunnel::shell::quote;
///
/// assert_eq!(quote("scene-2.blend"), "scene-2.blend");
/// assert_eq!(quote("two words"), "'two words'");
/// assert_eq!(quote(""), "''");
/// assert_eq!(quote("RPB_DEBUG=1"), "'RPB_DEBUG=1'");
/// assert_eq!(quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
/// ```
pub fn quote(word: &str) -> String {
    if is_plain(word) {
        return word.to_owned();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str(r"'\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// `path` as one shell word that evaluates to exactly its bytes.
///
/// A UTF-8 path is quoted like [`quote`]. Other bytes cannot be written in a command line (a
/// Rust `String`, and libssh2 takes the command as one), so such a path becomes
/// `"$(printf '\ooo…')"`, every byte outside `A-Z a-z 0-9 . _ - / + @ ,` written in octal,
/// followed by its trailing newlines (which a command substitution would drop) in single quotes.
///
/// ```
/// use std::ffi::OsStr;
/// use std::os::unix::ffi::OsStrExt as _;
/// use std::path::Path;
///
/// use pod_tunnel::shell::quote_path;
///
/// assert_eq!(quote_path(Path::new("/data/my file")), "'/data/my file'");
/// let latin1 = Path::new(OsStr::from_bytes(b"/data/caf\xe9"));
/// assert_eq!(quote_path(latin1), r#""$(printf '/data/caf\351')""#);
/// ```
pub fn quote_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    if let Ok(text) = std::str::from_utf8(bytes) {
        return quote(text);
    }
    let newlines = bytes.iter().rev().take_while(|&&b| b == b'\n').count();
    let body = &bytes[..bytes.len() - newlines];
    let mut word = format!("\"$(printf '{}')\"", printf_format(body));
    if newlines > 0 {
        word.push('\'');
        word.extend(std::iter::repeat_n('\n', newlines));
        word.push('\'');
    }
    word
}

/// `words`, each quoted like [`quote`], joined by spaces: a command line.
///
/// ```
/// use pod_tunnel::shell::join;
///
/// assert_eq!(
///     join(["sha256sum", "--", "odd name's.blend"]),
///     r"sha256sum -- 'odd name'\''s.blend'"
/// );
/// assert_eq!(join(Vec::<String>::new()), "");
/// ```
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut line = String::new();
    for word in words {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&quote(word.as_ref()));
    }
    line
}

/// A `printf` format (for single quotes) that prints exactly `bytes`: bytes outside a small
/// safe set, and a leading `-` (which some `printf`s would take for an option), in octal.
fn printf_format(bytes: &[u8]) -> String {
    let mut escaped = String::with_capacity(bytes.len() * 4);
    for (i, &b) in bytes.iter().enumerate() {
        let literal = b.is_ascii_alphanumeric() || b"._/+@,".contains(&b) || (b == b'-' && i > 0);
        if literal {
            escaped.push(char::from(b));
        } else {
            let _ = write!(escaped, "\\{b:03o}");
        }
    }
    escaped
}

/// A `sh -c` prelude that sets variable `name` to `path` exactly (handles every byte).
///
/// Unlike [`quote_path`] it never puts a newline in the command line: a path with a newline or
/// a byte that is not UTF-8 is printed by `printf` with an `x` after it (which keeps trailing
/// newlines from the command substitution), and the `x` is removed again with `%x`.
pub(crate) fn assign(name: &str, path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\n') => format!("{name}={}", quote(text)),
        _ => format!(
            "{name}=\"$(printf '{}x')\"; {name}=\"${{{name}%x}}\"",
            printf_format(bytes)
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::process::Command;

    use proptest::prelude::*;

    use super::*;

    /// Runs `script` with `/bin/sh -c` (in `dir`, when given) and returns its standard output.
    fn sh(script: &str, dir: Option<&Path>) -> Vec<u8> {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(script);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let out = command.output().expect("/bin/sh runs");
        assert!(out.status.success(), "{script:?}: {out:?}");
        out.stdout
    }

    /// What `/bin/sh` makes of `word` as an argument.
    fn printed(word: &str) -> Vec<u8> {
        sh(&format!("printf %s {word}"), None)
    }

    #[test]
    fn plain_words_stay_as_they_are() {
        for word in [
            "scene.blend",
            "/runpod/rpb/bin/session.sh",
            "a/b=c",
            "./x=1",
            "-v",
            "1:2@h%+,",
        ] {
            assert_eq!(quote(word), word);
        }
    }

    #[test]
    fn everything_else_is_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("'"), r"''\'''");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote("~/x"), "'~/x'");
        assert_eq!(quote("caf\u{e9}"), "'caf\u{e9}'");
        assert_eq!(quote("new\nline"), "'new\nline'");
    }

    #[test]
    fn an_equals_sign_before_any_slash_is_quoted() {
        assert_eq!(quote("NAME=value"), "'NAME=value'");
        assert_eq!(quote("A="), "'A='");
        assert_eq!(quote("=x"), "'=x'");
        assert_eq!(quote("PATH=/tmp"), "'PATH=/tmp'");
        assert_eq!(quote("dir/NAME=value"), "dir/NAME=value");
    }

    #[test]
    fn join_quotes_each_word() {
        let words = ["printf", "%s|", "a b", "", "it's", "X=1"];
        assert_eq!(join(words), r"printf '%s|' 'a b' '' 'it'\''s' 'X=1'");
        assert_eq!(sh(&join(words), None), b"a b||it's|X=1|");
    }

    #[test]
    fn paths_survive_the_shell_byte_for_byte() {
        let cases: [&[u8]; 8] = [
            b"/tmp/plain name.txt",
            b"/tmp/it's \"quoted\" $HOME `x`",
            b"/tmp/caf\xe9-latin1",
            b"/tmp/new\nline\n",
            b"/tmp/\xff\xfe*?[]",
            b"-v\xff",
            b"\xff\n\n",
            b"%s%d\\n\xff",
        ];
        for case in cases {
            let path = Path::new(OsStr::from_bytes(case));
            let word = quote_path(path);
            assert_eq!(printed(&word), case, "{word}");
            let script = format!("{}; printf %s \"$p\"", assign("p", path));
            assert_eq!(sh(&script, None), case, "{script}");
        }
    }

    /// Characters a shell treats specially, and a few ordinary ones, to mix into words.
    fn word() -> impl Strategy<Value = String> {
        let special = prop::sample::select(
            "'\"\\$`!=/~*?[]{} \t\n;&|<>()#%-:@+,._aZ0\u{e9}\u{65e5}"
                .chars()
                .collect::<Vec<_>>(),
        );
        let any = any::<char>().prop_filter("no NUL in a command line", |&c| c != '\0');
        prop::collection::vec(prop_oneof![3 => special, 1 => any], 0..24)
            .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn quoted_words_reach_the_program_unchanged(word in word()) {
            prop_assert_eq!(printed(&quote(&word)), word.as_bytes());
        }

        #[test]
        fn quoted_paths_reach_the_program_unchanged(
            bytes in prop::collection::vec(1_u8..=255, 0..24),
        ) {
            let path = Path::new(OsStr::from_bytes(&bytes));
            prop_assert_eq!(printed(&quote_path(path)), bytes);
        }

        /// In command position (`WORD :`), a quoted `NAME=value` runs a command that does not
        /// exist instead of setting `NAME`.
        #[test]
        fn name_value_words_never_become_assignments(
            // Lowercase: no shell keeps a lowercase variable read-only.
            name in "[a-z_][a-z0-9_]{0,6}",
            value in "[A-Za-z0-9_./:@%+=,-]{0,8}",
        ) {
            let scratch = tempfile::tempdir().expect("temporary directory");
            let word = quote(&format!("{name}={value}"));
            let script = format!("unset {name}; {word} : 2>/dev/null; printf %s \"${{{name}-unset}}\"");
            prop_assert_eq!(sh(&script, Some(scratch.path())), b"unset");
        }
    }
}
