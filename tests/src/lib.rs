//! Cross-crate end-to-end tests for rpb live in this package's `tests/` folder. The library is
//! empty on purpose: the package exists for its integration test binary.
