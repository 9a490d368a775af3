"""Bearer tokens and shared secrets compared in constant time, whatever text a client sent.

A header aiohttp decoded from bytes that are not UTF-8 holds surrogates, and ``str.encode()``
raises on them (a 500 before the wrong-token rate limit saw the request): the text is
compared as bytes with ``surrogatepass``, so any header is either the token or not.
"""

from __future__ import annotations

import hmac


def same_secret(given: str, expected: str) -> bool:
    """Whether ``given`` is ``expected``, in constant time, for any text ``given`` holds.

    >>> same_secret("s3cret", "s3cret"), same_secret("\\udcff", "s3cret"), same_secret("é", "e")
    (True, False, False)
    """
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def bearer_matches(authorization: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <token>`` (no token: never).

    >>> bearer_matches("Bearer abc", "abc"), bearer_matches("bearer abc ", "abc")
    (True, True)
    >>> bearer_matches("Basic abc", "abc"), bearer_matches("Bearer \\udcff\\udcfe", "abc")
    (False, False)
    """
    if not token or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(given) and same_secret(given.strip(), token)
