//! Refusals shared by the template, network-volume, registry and CPU-catalog operations: a
//! request that breaks one of the API's rules fails before it is sent.

use crate::error::Error;

/// An [`Error::InvalidRequest`] for `operation`.
pub(crate) fn invalid(operation: &str, reason: impl Into<String>) -> Error {
    Error::InvalidRequest {
        operation: operation.to_owned(),
        reason: reason.into(),
    }
}

/// The operation's name, `"{verb} {id}"`, after refusing a blank id (which would turn
/// `/v2/<resource>/{id}` into the collection's path); the refusal names just the verb.
pub(crate) fn operation_on(verb: &str, kind: &str, id: &str) -> Result<String, Error> {
    if id.trim().is_empty() {
        Err(invalid(verb, format!("the {kind} id is empty")))
    } else {
        Ok(format!("{verb} {id}"))
    }
}

/// Runs a body's own check and names the operation in its refusal.
pub(crate) fn checked(operation: &str, check: Result<(), String>) -> Result<(), Error> {
    check.map_err(|reason| invalid(operation, reason))
}
