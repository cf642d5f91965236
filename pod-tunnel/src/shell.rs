//! Quoting arbitrary (possibly non-UTF-8) paths for the remote POSIX shell.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// A shell word that evaluates to exactly `path`'s bytes.
///
/// Plain UTF-8 paths are single-quoted. Other bytes cannot travel in an SSH exec request (which
/// libssh2 takes as a Rust `&str`), so such paths become `"$(printf '\ooo…/')"` with the
/// trailing `/` stripped again, which works in any POSIX shell.
pub(crate) fn quote_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\n') => format!("'{}'", text.replace('\'', r"'\''")),
        _ => {
            let mut escaped = String::with_capacity(bytes.len() * 4);
            for &b in bytes {
                if b.is_ascii_alphanumeric() || b"._-/+@,".contains(&b) {
                    escaped.push(char::from(b));
                } else {
                    let _ = write!(escaped, "\\{b:03o}");
                }
            }
            // The `x` guards trailing newlines against command substitution; `%x` removes it.
            format!("\"$(printf '{escaped}x')\"")
        }
    }
}

/// A `sh -c` prelude that sets variable `name` to `path` exactly (handles every byte).
pub(crate) fn assign(name: &str, path: &Path) -> String {
    let word = quote_path(path);
    if word.starts_with('"') {
        format!("{name}={word}; {name}=\"${{{name}%x}}\"")
    } else {
        format!("{name}={word}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn eval(script: &str) -> Vec<u8> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{script}; printf %s \"$p\""))
            .output()
            .unwrap();
        out.stdout
    }

    #[test]
    fn paths_survive_the_shell_byte_for_byte() {
        let cases: [&[u8]; 5] = [
            b"/tmp/plain name.txt",
            b"/tmp/it's \"quoted\" $HOME `x`",
            b"/tmp/caf\xe9-latin1",
            b"/tmp/new\nline\n",
            b"/tmp/\xff\xfe*?[]",
        ];
        for case in cases {
            let path = Path::new(OsStr::from_bytes(case));
            assert_eq!(eval(&assign("p", path)), case, "{}", assign("p", path));
        }
    }
}
