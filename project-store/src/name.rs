//! The rules a project name (or version stem) must follow: one safe path component here and on
//! the pod, in composed Unicode, with nothing invisible or confusable.

use unicode_normalization::{UnicodeNormalization as _, is_nfc};

/// The longest accepted project name or version stem, in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// Why a project name (or version stem) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidName {
    /// The name is empty.
    #[error("the name is empty; give a name such as `robot-arm`")]
    Empty,
    /// The name is too long.
    #[error("the name is {len} bytes long, the limit is {max}; use a shorter name")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains `/` or `\`.
    #[error("the name contains the path separator {separator:?}; use `-` or `_` instead")]
    PathSeparator {
        /// The separator found.
        separator: char,
    },
    /// The name is `..`.
    #[error("`..` refers to the parent directory and cannot be a name")]
    ParentDirectory,
    /// The name starts with `.` (hidden, or `.` itself).
    #[error("the name starts with `.`, which would make it hidden; remove the leading dot")]
    LeadingDot,
    /// The name starts with `-` (it would read as an option in shell commands).
    #[error("the name starts with `-`, which commands would read as an option; remove it")]
    LeadingDash,
    /// The name starts or ends with whitespace.
    #[error("the name starts or ends with whitespace; remove it")]
    SurroundingWhitespace,
    /// The name contains a control character (newline, tab, NUL, ...).
    #[error("the name contains a control character at byte {position}; remove it")]
    ControlCharacter {
        /// Byte offset of the character.
        position: usize,
    },
    /// The name contains an invisible formatting character (zero-width space or joiner,
    /// soft hyphen, byte-order mark, bidirectional override, ...): two names that look the same
    /// would be different projects, and a reordering mark hides what the name really is.
    #[error(
        "the name contains the invisible character U+{code:04X} at byte {position}; retype the \
         name without it"
    )]
    InvisibleCharacter {
        /// Byte offset of the character.
        position: usize,
        /// Its code point.
        code: u32,
    },
    /// The name contains a letter that imitates a Latin letter: a fullwidth form, or a Greek
    /// or Cyrillic letter in a name that also has Latin letters (`сhair` with a Cyrillic `с`
    /// would sit next to `chair` as a different project).
    #[error(
        "the name contains U+{code:04X} at byte {position}, which looks like a Latin letter but \
         is not; retype the name in one script"
    )]
    Confusable {
        /// Byte offset of the character.
        position: usize,
        /// Its code point.
        code: u32,
    },
    /// The name is not in composed Unicode form (NFC): a letter followed by a combining mark,
    /// as some systems write `é`, would look exactly like the composed letter while naming a
    /// different folder. [`ProjectName::new`](crate::ProjectName::new) composes names itself; this is seen only for
    /// names taken as they are (folder names, manifests, version stems).
    #[error(
        "the name has the combining mark U+{code:04X} at byte {position} where a composed letter \
         belongs (Unicode NFC); retype the name"
    )]
    NotComposed {
        /// Byte offset of the first character that composition changes.
        position: usize,
        /// Its code point.
        code: u32,
    },
}

/// Where `name` leaves composed Unicode form: a character NFC replaces on its own (such as the
/// Ångström sign), else the combining mark that would merge into the letter before it.
fn find_uncomposed(name: &str) -> Option<(usize, char)> {
    if is_nfc(name) {
        return None;
    }
    let changed_alone = |c: char| {
        let mut composed = std::iter::once(c).nfc();
        !(composed.next() == Some(c) && composed.next().is_none())
    };
    let mut composed = name.nfc();
    let mut chars = name.char_indices().peekable();
    while let Some((position, c)) = chars.next() {
        if composed.next() == Some(c) {
            continue;
        }
        if changed_alone(c) {
            return Some((position, c));
        }
        return chars.peek().copied().or(Some((position, c)));
    }
    None
}

/// The first compatibility character of `name` (ligatures, superscripts, circled or
/// mathematical letters, fullwidth forms): it looks like plain letters or digits it is not.
fn find_compatibility_form(name: &str) -> Option<(usize, char)> {
    name.char_indices()
        .find(|&(_, c)| std::iter::once(c).nfkc().ne(std::iter::once(c).nfc()))
}

/// The first character of `name` that imitates a Latin letter, with its byte offset.
fn find_confusable(name: &str) -> Option<(usize, char)> {
    let fullwidth = |c: char| ('\u{FF01}'..='\u{FF5E}').contains(&c);
    let greek_or_cyrillic = |c: char| ('\u{0370}'..='\u{052F}').contains(&c) && c.is_alphabetic();
    let has_latin = name.chars().any(|c| c.is_ascii_alphabetic());
    name.char_indices()
        .find(|&(_, c)| fullwidth(c) || (has_latin && greek_or_cyrillic(c)))
}

/// Whether `c` is an invisible formatting character (Unicode `Cf` characters that occur in
/// text: soft hyphen, zero-width and joiner characters, directional marks, embeddings,
/// overrides and isolates, invisible operators, the byte-order mark, interlinear annotation
/// marks, tag characters) or a non-character that renders as nothing.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Checks the rules shared by project names and version stems.
///
/// # Errors
///
/// The first rule the name breaks, checked in the order of the [`InvalidName`] variants.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidName::TooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if let Some(separator) = name.chars().find(|&c| c == '/' || c == '\\') {
        return Err(InvalidName::PathSeparator { separator });
    }
    if name == ".." {
        return Err(InvalidName::ParentDirectory);
    }
    if name.starts_with('.') {
        return Err(InvalidName::LeadingDot);
    }
    if name.starts_with('-') {
        return Err(InvalidName::LeadingDash);
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(InvalidName::SurroundingWhitespace);
    }
    if let Some((position, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InvalidName::ControlCharacter { position });
    }
    if let Some((position, c)) = name.char_indices().find(|&(_, c)| is_invisible(c)) {
        return Err(InvalidName::InvisibleCharacter {
            position,
            code: u32::from(c),
        });
    }
    if let Some((position, c)) = find_confusable(name).or_else(|| find_compatibility_form(name)) {
        return Err(InvalidName::Confusable {
            position,
            code: u32::from(c),
        });
    }
    if let Some((position, c)) = find_uncomposed(name) {
        return Err(InvalidName::NotComposed {
            position,
            code: u32::from(c),
        });
    }
    Ok(())
}
