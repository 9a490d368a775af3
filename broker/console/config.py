"""Console settings from the environment (read once at the edge, like the partners' secrets).

- ``BROKER_CONSOLE_TOKEN``: the operator token (>= 24 characters); never logged or shown;
- ``BROKER_CONSOLE_TILES``: base-map tile URL template (``https://.../{z}/{x}/{y}.png``); none
  by default, so the page loads nothing from outside unless the operator says so;
- ``BROKER_CONSOLE_TILES_ATTRIBUTION``: the attribution the tile server asks for;
- ``BROKER_CONSOLE_LOOKBACK_S``: how far back (seconds) a starting worker reads Kafka;
- ``BROKER_CONSOLE_WRITE_TIMEOUT_S``: how long a write to a page's event stream may wait for
  the page to read (seconds, default 30); past it the stream is closed and its slot freed.

Without ``BROKER_CONSOLE_TOKEN`` the documented development token is used only where
everything is loopback: a worker bound to a loopback address with
``BROKER_ALLOW_DEV_SECRETS=true``, or ``broker replay --serve`` on a loopback address.
Otherwise the worker runs without a console (it says so at start) and ``replay --serve`` stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from broker.console.access import Access, dev_token, is_loopback

TOKEN_VAR = "BROKER_CONSOLE_TOKEN"
TILES_VAR = "BROKER_CONSOLE_TILES"
ATTRIBUTION_VAR = "BROKER_CONSOLE_TILES_ATTRIBUTION"
LOOKBACK_VAR = "BROKER_CONSOLE_LOOKBACK_S"
WRITE_TIMEOUT_VAR = "BROKER_CONSOLE_WRITE_TIMEOUT_S"
DEFAULT_WRITE_TIMEOUT_S = 30.0  # broker.console.server.WRITE_TIMEOUT_S
MAX_SECONDS = 1e7  # a lookback or write timeout at or past this is a typo
DEFAULT_LOOKBACK_S = 900.0  # alerts live 60 s past their last update: 15 min reaches them all


class ConsoleConfigError(ValueError):
    """A console setting is wrong; the message names the variable."""


@dataclass(frozen=True)
class ConsoleConfig:
    """Everything the console needs from the environment, already checked."""

    access: Access
    tiles: str | None = None
    attribution: str = ""
    lookback_s: float = DEFAULT_LOOKBACK_S
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S


def access_from_env(env: Mapping[str, str], *, host: str, allow_dev: bool) -> Access | None:
    """The operator token of ``BROKER_CONSOLE_TOKEN``, else the dev default where allowed."""
    token = env.get(TOKEN_VAR, "").strip()
    if token:
        try:
            return Access(token)
        except ValueError as err:
            raise ConsoleConfigError(f"{TOKEN_VAR}: {err}") from None
    if allow_dev and is_loopback(host):
        return Access(dev_token(), source="dev-default")
    return None


def console_from_env(env: Mapping[str, str], *, host: str, allow_dev: bool) -> ConsoleConfig | None:
    """The console's settings, or None when no token may be used (no console)."""
    access = access_from_env(env, host=host, allow_dev=allow_dev)
    if access is None:
        return None
    tiles = env.get(TILES_VAR, "").strip() or None
    # Leaflet's row is {y} or, in the TMS order, {-y}
    template = (tiles or "").replace("{-y}", "{y}")
    missing = [part for part in ("{z}", "{x}", "{y}") if part not in template]
    if tiles is not None and (not tiles.startswith(("https://", "http://")) or missing):
        raise ConsoleConfigError(f"{TILES_VAR}={tiles!r}: want an http(s) URL template "
                                 "with {z}, {x} and {y} (or {-y})")
    lookback = _seconds(env, LOOKBACK_VAR, DEFAULT_LOOKBACK_S)
    write_timeout = _seconds(env, WRITE_TIMEOUT_VAR, DEFAULT_WRITE_TIMEOUT_S)
    return ConsoleConfig(access, tiles, env.get(ATTRIBUTION_VAR, "").strip(), lookback,
                         write_timeout)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds > 0 from ``env[name]`` (``default`` when unset or empty)."""
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConsoleConfigError(f"{name}={raw!r}: want seconds") from None
    if not 0 < value < MAX_SECONDS:
        raise ConsoleConfigError(f"{name}={raw!r}: want seconds > 0 and < {MAX_SECONDS:,.0f} "
                                 "(about 116 days)")
    return value
