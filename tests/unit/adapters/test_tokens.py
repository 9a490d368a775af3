"""Tokens compared whatever bytes a client sent (aiohttp hands undecodable header bytes on as
surrogates, and ``str.encode()`` raised on them: a 500 before the wrong-token rate limit)."""

from __future__ import annotations

import pytest

from adapters.tokens import bearer_matches, same_secret

TOKEN = "waze-token-0123456789abcdef"


@pytest.mark.parametrize(
    "header, ok",
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN} ", True),
        (f"Basic {TOKEN}", False),
        ("Bearer ", False),
        (None, False),
        ("Bearer \udcff\udcfe", False),  # bytes 0xff 0xfe as aiohttp decodes them
        ("Bearer \ud800", False),  # a lone surrogate
        ("Bearer é", False),
    ],
)
def test_a_bearer_header_is_the_token_or_not_never_an_error(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, TOKEN) is ok


def test_no_token_configured_matches_nothing() -> None:
    assert not bearer_matches("Bearer ", "") and not bearer_matches("Bearer x", None)
    assert same_secret("\udcff", "\udcff") and not same_secret("\udcff", "\udcfe")
