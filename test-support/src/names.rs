//! File names that a shell, the SCP protocol or a log line would misread, for transfer tests.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;

/// Spaces, quotes, backticks, `$(...)`, `;` and `&`, newline and carriage return, a leading
/// dash, glob characters, a tab, Latin-1 and invalid UTF-8 bytes, a backslash, and a trailing
/// newline: each a valid Unix file name.
pub fn hostile_file_names() -> Vec<OsString> {
    [
        &b"with space.blend"[..],
        b"double\"quote.blend",
        b"single'quote.blend",
        b"back`tick`.blend",
        b"$(touch pwned).blend",
        b"semi;colon&amp.blend",
        b"new\nline.blend",
        b"carriage\rreturn.blend",
        b"-leading-dash.blend",
        b"glob*?[x].blend",
        b"tab\there.blend",
        b"caf\xe9 \xff.blend",
        b"\xc3\x28invalid.blend",
        b"back\\slash.blend",
        b"trailing newline\n",
    ]
    .iter()
    .map(|bytes| OsString::from_vec(bytes.to_vec()))
    .collect()
}
