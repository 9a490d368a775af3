"""JSON nested too deeply is refused (``bad_json``), never raised, by every decoder the worker
calls: msgspec recurses once per level and raised ``RecursionError`` (not a ``DecodeError``)
on a 2 KB line of a thousand ``[``, which escaped the decoders; the worker then stopped on
that record after every restart (``avl.positions``), or never acked it (``cad.status``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import codec
from broker.agencies import load_agencies
from broker.model import Fix, Rejection, Route, UnitStatus
from broker.traccar import decode_traccar

OK = Path(__file__).resolve().parents[2] / "fixtures" / "bad_messages" / "ok"
AGENCIES = load_agencies(OK.parent.parent / "agencies.toml")
FAR = timedelta(days=365_000)  # no time is judged "ahead" here: the decoding is what is tested

Decoder = Callable[[bytes], object]
DECODERS: dict[str, Decoder] = {
    "position": lambda raw: codec.decode_position(raw, max_future_skew=FAR),
    "status": lambda raw: codec.decode_status(raw, max_future_skew=FAR),
    "route": lambda raw: codec.decode_route(raw, max_future_skew=FAR),
    "traccar": lambda raw: decode_traccar(raw, AGENCIES, max_future_skew=FAR),
}
TAKEN = {"position": Fix, "status": UnitStatus, "route": Route, "traccar": Fix}
GOOD = {"position": "position.json", "status": "status.json", "route": "route.json",
        "traccar": "traccar.json"}
# the levels the added field sits in: the message's object (Traccar's: its position's attributes)
AROUND = {"position": 1, "status": 1, "route": 1, "traccar": 3}


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def with_field(kind: str, value: str) -> bytes:
    """The corpus's good message of ``kind`` with one more field (unknown ones are ignored;
    a Traccar attribute, which is read as any JSON)."""
    text = (OK / GOOD[kind]).read_text().rstrip()
    if kind == "traccar":
        return text.replace('"attributes": {', f'"attributes": {{"x": {value}, ', 1).encode()
    return (text[:-1] + f', "x": {value}}}').encode()


@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("levels", [65, 1000, 5000])
def test_a_message_nested_too_deeply_is_refused_as_bad_json(kind: str, levels: int) -> None:
    raw = with_field(kind, nested(levels))
    out = DECODERS[kind](raw)
    assert isinstance(out, Rejection), out
    assert out.reason == "bad_json"
    assert "nested too deeply" in out.detail and f"({levels + AROUND[kind]} levels)" in out.detail
    assert out.raw == raw


@pytest.mark.parametrize("kind", DECODERS)
def test_as_deep_as_the_limit_is_still_taken(kind: str) -> None:
    raw = with_field(kind, nested(codec.MAX_NESTING - AROUND[kind]))
    assert isinstance(DECODERS[kind](raw), TAKEN[kind])


@pytest.mark.parametrize("kind", DECODERS)
def test_brackets_in_a_string_do_not_nest(kind: str) -> None:
    raw = with_field(kind, json.dumps("[{" * 1000 + '\\"' + "]"))
    assert isinstance(DECODERS[kind](raw), TAKEN[kind])


def test_the_depth_is_counted_without_strings_and_past_unclosed_ones() -> None:
    assert codec.too_deep(b'{"a": "' + b"[" * 100 + b'"}') is None
    assert codec.too_deep(b'{"a": "\\"' + b"[" * 100 + b'"}') is None  # an escaped quote
    out = codec.too_deep(b"[" * 65)  # never closed
    assert out is not None and out.reason == "bad_json"
    assert codec.too_deep(b"[[]]" * 100) is None  # many, not deep
    wide = b"[" + b",".join([b"[1, 2]"] * 5000) + b"]"  # a route's coordinates
    assert codec.too_deep(wide) is None


def run_at_stack_depth(frames: int, f: Callable[[], object]) -> object:
    """``f()`` called ``frames`` Python frames deeper than here."""
    if frames <= 0:
        return f()
    return run_at_stack_depth(frames - 1, f)


@pytest.mark.parametrize("kind", DECODERS)
def test_refused_whatever_the_interpreter_stack_holds_already(kind: str) -> None:
    """With the stack nearly full (a deep caller), msgspec's own recursion limit is met
    sooner than the nesting limit: still a rejection, never a RecursionError."""
    raw = with_field(kind, nested(codec.MAX_NESTING - AROUND[kind]))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        out = run_at_stack_depth(200 - 60, lambda: DECODERS[kind](raw))
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(out, Rejection) and out.reason == "bad_json", out
    assert "nested too deeply" in out.detail


def deep_json(levels: int, opens: bytes) -> bytes:
    return bytes(opens[i % len(opens)] for i in range(levels))


hostile = st.one_of(
    st.binary(max_size=2_000),
    st.builds(  # junk, nesting of any depth (closed or not), junk
        lambda head, levels, opens, closed, tail: (
            head + deep_json(levels, opens)
            + (bytes(reversed(deep_json(levels, opens))).translate(bytes.maketrans(b"[{", b"]}"))
               if closed else b"")
            + tail),
        st.sampled_from([b"", b'{"vehicle_id": "E1", "x": ', b'{"position": {"attributes": '
                         b'{"a": ', b"[", b'"']) | st.binary(max_size=30),
        st.integers(min_value=0, max_value=3_000),
        st.sampled_from([b"[", b"{", b'{"a":', b'[1,', b"[{", b'{"a":[']),
        st.booleans(),
        st.binary(max_size=30),
    ),
)


@settings(max_examples=300, deadline=None)
@given(hostile)
def test_no_decoder_raises_on_any_bytes_deep_or_not(raw: bytes) -> None:
    for kind, decode in DECODERS.items():
        out = decode(raw)
        assert isinstance(out, TAKEN[kind] | Rejection), (kind, out)


def test_an_unclosed_string_of_escaped_quotes_is_one_pass_and_its_brackets_do_not_nest() -> None:
    """A string never closed runs to the end, as a parser reads it: the brackets after it are
    in it. Requiring the closing quote, the scan failed at the end and started again at every
    escaped quote: quadratic, ~11 s of CPU for a 64 KiB line, the worker's loop blocked."""
    hostile = b'["' + b'\\"' * 32_000 + b"[" * 70
    assert codec.too_deep(hostile) is None
    refused = codec.decode_position(hostile)
    assert isinstance(refused, Rejection)  # all the same (here: an array, not an object)


def test_a_string_left_open_on_a_lone_backslash_runs_to_the_end_too() -> None:
    """``"...\\`` at the very end: the scan took it as no string at all, started again at
    every escaped quote in it (17 s of CPU for 64 KiB), and counted the brackets inside."""
    raw = b'["' + b"[" * 70 + b'\\"' * 100 + b"\\"
    assert codec.too_deep(raw) is None


@pytest.mark.parametrize("kind", DECODERS)
def test_a_byte_order_mark_is_refused_as_bad_json_saying_so(kind: str) -> None:
    """A producer writing through a .NET ``StreamWriter`` with ``Encoding.UTF8`` (or a file
    saved by Notepad) puts EF BB BF before every message; msgspec's "invalid character (byte 0)"
    left the producer's developer to guess why every message was refused. RFC 8259 8.1: a
    networked JSON text must not begin with one."""
    good = (OK / GOOD[kind]).read_bytes().strip()
    raw = b"\xef\xbb\xbf" + good
    out = DECODERS[kind](raw)
    assert isinstance(out, Rejection) and out.reason == "bad_json" and out.raw == raw
    assert "byte order mark" in out.detail
    assert isinstance(DECODERS[kind](good), TAKEN[kind])
