//! Example programs for the rpb crates live in `src/bin/`, one scenario per file.
