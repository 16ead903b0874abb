"""A refused API key is an `auth` error, not a failing server."""

import pytest

from clients.base import ServerError


@pytest.mark.parametrize("status", [401, 403, "UNAUTHENTICATED", "PERMISSION_DENIED"])
def test_refused_keys_are_auth(status):
    assert ServerError(status, "no").kind == "auth"


@pytest.mark.parametrize("status", [500, 413, "INTERNAL", "RESOURCE_EXHAUSTED"])
def test_other_refusals_stay_server(status):
    assert ServerError(status, "no").kind == "server"
