"""msgspec validation errors of configuration, in the configuration's own words.

Both config loaders (``adapters.partners_file``: partners.toml, ``broker.streams.settings``: the
``BROKER_*`` environment) decode into frozen msgspec Structs. msgspec says what is wrong in its
own terms and where with a JSON path (``Expected `int` >= 1 - at `$.partner[0].max_attempts```).
:func:`locate` splits that into a path and a message, :func:`type_at` finds the declared type at
the path, and :func:`explain` rewords the message for a person editing a file or an environment
(``want a whole number >= 1, got 0``). Each loader then names the place its own way (a partner
id and a field path, an environment variable).

A rule checked in a Struct's ``__post_init__`` raises :class:`Invalid` naming the field under
the Struct it is about; msgspec reports it at the Struct, :func:`locate` adds the field.

:func:`check_bounds` enforces the ``Meta(ge=..)`` style bounds of a Struct built in code, where
msgspec does not check them (it does when decoding).
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path as FilePath
from typing import Any

import msgspec
import msgspec.inspect as mi

Path = tuple[str | int, ...]
NOTHING: Any = msgspec.UNSET  # "no value to show" (absent, or a secret)

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_EXPECTED = re.compile(r"Expected `(?P<types>[^`]+)`(?P<rest>.*?)(?:, got (?:`[^`]+`|\d+))?")
_FIELD = re.compile(r"Object (?P<what>missing required|contains unknown) field `(?P<name>[^`]+)`")
_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "",
}


class Invalid(ValueError):
    """A rule broken in a Struct's ``__post_init__``; ``field`` (``"policy.fields"``, ``""``
    for the Struct itself) is where under the Struct, for :func:`locate`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _steps(dotted: str) -> Path:
    """``.partner[0].policy`` -> ``("partner", 0, "policy")`` (``[...]``: a dict key)."""
    return tuple(
        name if name else ("..." if index == "..." else int(index))
        for name, index in _STEP.findall(dotted)
    )


def locate(err: msgspec.ValidationError) -> tuple[Path, str]:
    """The path (``("partner", 0, "policy")``) and message of a validation error.

    A missing field is moved into the path (``(..., "name")``, ``"missing"``), and so is the
    field of an :class:`Invalid`, so an error is named by the field it is about; an unknown key
    stays on its table (see :func:`explain`).
    """
    text = str(err)
    message, sep, where = text.rpartition(" - at `$")
    if not sep:
        message, where = text, "`"
    path = _steps(where[:-1])
    if isinstance(err.__cause__, Invalid):
        return (*path, *_steps("." + err.__cause__.field)), str(err.__cause__)
    missing = _FIELD.fullmatch(message)
    if missing and missing["what"] == "missing required":
        return (*path, missing["name"]), "missing"
    return path, message


def unknown_key(message: str) -> str | None:
    """The key a message of :func:`locate` calls unknown (``Object contains unknown field``)."""
    found = _FIELD.fullmatch(message)
    return found["name"] if found and found["what"] == "contains unknown" else None


def type_at(root: Any, path: Path) -> mi.Type | None:
    """The declared type (``msgspec.inspect``) at ``path`` under the type ``root``, if known."""
    tp: mi.Type | None = _unwrap(mi.type_info(root))
    for step in path:
        if isinstance(tp, mi.StructType) and isinstance(step, str):
            tp = next((f.type for f in tp.fields if f.encode_name == step), None)
        elif isinstance(tp, mi.TupleType) and isinstance(step, int):
            tp = tp.item_types[step] if step < len(tp.item_types) else None
        elif isinstance(tp, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            tp = tp.item_type
        elif isinstance(tp, mi.DictType):
            tp = tp.value_type
        else:
            return None
        tp = _unwrap(tp)
    return tp


def _unwrap(tp: mi.Type | None) -> mi.Type | None:
    """``X | None`` -> ``X``; in a wider union, its table (Struct) member if it has one."""
    if not isinstance(tp, mi.UnionType):
        return tp
    members = [t for t in tp.types if not isinstance(t, mi.NoneType)]
    tables = [t for t in members if isinstance(t, mi.StructType)]
    return members[0] if len(members) == 1 else (tables[0] if tables else tp)


def explain(message: str, tp: mi.Type | None, value: Any = NOTHING) -> str:
    """msgspec's ``message`` about ``value`` (declared type ``tp``), in plain words.

    ``value`` is shown (shortened) after the words; pass :data:`NOTHING` to show nothing
    (unknown, or a secret). Messages that are not msgspec's come back unchanged.
    """
    got = "" if value is NOTHING else f", got {shown(value)}"
    expected = _EXPECTED.fullmatch(message)
    if expected:
        words = " or ".join(w for t in expected["types"].split(" | ") if (w := _WORDS.get(t, t)))
        rest = " (not empty)" if expected["rest"] == " of length >= 1" else expected["rest"]
        return f"want {words}{rest}{got}"
    if message.startswith("Invalid enum value") and isinstance(tp, mi.LiteralType):
        return f"want one of {', '.join(map(str, tp.values))}{got}"
    key = unknown_key(message)
    if key is not None and isinstance(tp, mi.StructType):
        known = [f.encode_name for f in tp.fields]
        keys = [k for k in value if k not in known] if isinstance(value, Mapping) else [key]
        return f"unknown keys {sorted(map(str, keys))}{did_you_mean(keys, known)}"
    return message


def described(err: msgspec.ValidationError, data: Any, root: Any) -> str:
    """A failed ``msgspec.convert(data, root)`` as ``where: why``: the dotted place (``top
    level``), what was wanted, and the value that was there."""
    path, message = locate(err)
    path = _keyed(path, message, data, root)
    where = ".".join(str(step) for step in path) or "top level"
    return f"{where}: {explain(message, type_at(root, path), value_at(data, path))}"


def _keyed(path: Path, message: str, data: Any, root: Any) -> Path:
    """``path`` with each ``...`` (msgspec's word for "some key of this table") replaced by the
    key whose entry fails: ``classes.foo``, not ``classes....``. Found by converting ``data``
    again with that table cut to one entry at a time (the first giving the same error); a key
    not found stays ``...``."""
    steps = list(path)
    for i, step in enumerate(steps):
        if step != "...":
            continue
        table = value_at(data, tuple(steps[:i]))
        if not isinstance(table, Mapping):
            break
        for key, value in table.items():
            trial = _with(data, tuple(steps[:i]), {key: value})
            try:
                msgspec.convert(trial, root)
            except msgspec.ValidationError as again:
                found, said = locate(again)
                if said == message and len(found) == len(steps) and found[i] == "...":
                    steps[i], data = key, trial
                    break
        else:
            break
    return tuple(steps)


def _with(data: Any, path: Path, value: Any) -> Any:
    """``data`` with ``value`` in place of what is at ``path`` (copies along the way)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, Mapping):
        return {**data, head: _with(data[head], rest, value)}
    copy = list(data)
    copy[head] = _with(copy[head], rest, value)  # type: ignore[index]
    return copy


def did_you_mean(keys: Iterable[str], known: Iterable[str], otherwise: str | None = None) -> str:
    """`` (did you mean 'timeout_s'?)`` for near misses, else ``otherwise``, by default
    `` (known: a, b, ...)``."""
    known = sorted(known)
    close = [m for k in keys for m in difflib.get_close_matches(str(k), known, n=1)]
    if close:
        return f" (did you mean {' or '.join(map(repr, close))}?)"
    return f" (known: {', '.join(known)})" if otherwise is None else otherwise


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` of an offending value, shortened to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_BOUNDS: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
    ("ge", operator.ge, ">="),
    ("gt", operator.gt, ">"),
    ("le", operator.le, "<="),
    ("lt", operator.lt, "<"),
)


@functools.cache
def _bounds_of(cls: type) -> tuple[tuple[str, Callable[[Any, Any], bool], str, Any], ...]:
    found = []
    for f in mi.type_info(cls).fields:  # type: ignore[attr-defined]
        for attr, ok, sign in _BOUNDS:
            limit = getattr(_unwrap(f.type), attr, None)
            if limit is not None:
                found.append((f.name, ok, sign, limit))
    return tuple(found)


def check_bounds(obj: msgspec.Struct, label: str) -> None:
    """Raise ``ValueError`` naming the first field of ``obj`` outside its ``Meta`` bounds.

    For ``__post_init__``: msgspec checks ``Meta(ge=0)`` when decoding, not in ``__init__``.
    """
    for name, ok, sign, limit in _bounds_of(type(obj)):
        value = getattr(obj, name)
        if value is not None and not ok(value, limit):
            raise ValueError(f"{label} {name} must be {sign} {limit}, got {value}")


def read_toml(path: str | FilePath, error: type[Exception]) -> dict[str, Any]:
    """A TOML file's table; an unreadable or invalid file raises ``error`` naming the file (so
    does one nested deeper than :data:`MAX_NESTING`: tomllib raised ``RecursionError`` at some
    300 levels, a traceback out of every command that reads the file)."""
    try:
        # utf-8-sig: a byte order mark (Windows editors write one) is read as none, not refused
        text = FilePath(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise error(f"{path}: cannot read it ({err.strerror})") from err
    except UnicodeDecodeError as err:  # TOML is UTF-8 text
        raise error(f"{path}: not UTF-8 text (byte {err.start}): not a TOML file") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{path}: not valid TOML: {err}") from err
    except RecursionError:  # tomllib recurses once per level: some 300 of them
        raise error(f"{path}: {too_deep()}") from None
    if (depth := nesting(data)) > MAX_NESTING:  # what reads it after may recurse too
        raise error(f"{path}: {too_deep(depth)}")
    return data


# arrays and tables in one another in a file read: deeper is refused (ours nest 6 at most)
MAX_NESTING = 64


def too_deep(depth: int | None = None) -> str:
    """Why a file nested too deeply is refused."""
    found = "" if depth is None else f" ({depth} levels)"
    return f"arrays and tables nested too deeply{found}: at most {MAX_NESTING} levels"


def nesting(value: object) -> int:
    """How deep the lists and dicts of decoded data go (without recursing: such data need not
    fit the interpreter's stack).

    >>> nesting({"a": [[1], {}]}), nesting("text")
    (3, 0)
    """
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            todo += ((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            todo += ((v, level + 1) for v in item)
        else:
            continue
        deepest = max(deepest, level)
    return deepest


def value_at(data: Any, path: Path) -> Any:
    """The raw value at ``path`` (a :func:`locate` path) in decoded TOML data, or NOTHING."""
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return NOTHING
    return data
