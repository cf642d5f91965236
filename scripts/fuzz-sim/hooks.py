"""Schemathesis hooks for scripts/fuzz-sim.sh.

An array query parameter (`style: form, explode: false`) that is empty, holds one empty item, or
is null is sent the same way: `name=`. Schemathesis generates all three, counting the first as
valid and the others as invalid, so no server can satisfy both data checks on that request. These
checks are the built-in positive and negative data checks minus that one ambiguous request.
"""

import schemathesis
from schemathesis.specs.openapi import checks as builtin


def _sends_empty_list(case):
    for value in (case.query or {}).values():
        if value in (None, "") or (isinstance(value, list) and all(item in ("", None) for item in value)):
            return True
    return False


@schemathesis.check
def positive_data_acceptance_unambiguous(ctx, response, case):
    if _sends_empty_list(case):
        return None
    return builtin.positive_data_acceptance(ctx, response, case)


@schemathesis.check
def negative_data_rejection_unambiguous(ctx, response, case):
    if _sends_empty_list(case):
        return None
    return builtin.negative_data_rejection(ctx, response, case)
