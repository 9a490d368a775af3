"""A unit's status event in its log: a record of ``avl.positions`` marked by a header.

The forwarder (``broker.streams.ingest``) appends each ``cad.status`` event to the unit's log
with this header, so the vehicle agent reads fixes and status changes in one order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KIND_HEADER = "kind"
STATUS_KIND = b"status"


def is_status(headers: Any) -> bool:
    """Whether a record's headers (a list of pairs, or a mapping) mark a status event."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return any(k == KIND_HEADER and v == STATUS_KIND for k, v in pairs)
