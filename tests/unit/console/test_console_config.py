"""The console's settings (broker/console/config.py): a bad value is named with what is wanted."""

from __future__ import annotations

import pytest

from broker.console.config import ConsoleConfigError, console_from_env


def config(**env: str):
    return console_from_env(env, host="127.0.0.1", allow_dev=True)


@pytest.mark.parametrize("name", ["BROKER_CONSOLE_LOOKBACK_S", "BROKER_CONSOLE_WRITE_TIMEOUT_S"])
def test_seconds_past_the_limit_say_the_real_range(name: str) -> None:
    """1e8 was refused as "want seconds > 0", which it is (a review)."""
    with pytest.raises(ConsoleConfigError) as err:
        config(**{name: "1e8"})
    assert f"{name}='1e8': want seconds > 0 and < 10,000,000" in str(err.value)
    assert config(**{name: "9999999"}) is not None


@pytest.mark.parametrize("tiles", ["https://x/tile.png", "https://x/{z}/{x}.png",
                                   "https://x/{z}/{y}/{x}.png".replace("{y}", "y")])
def test_a_tile_template_without_z_x_and_y_is_refused(tiles: str) -> None:
    """https://x/tile.png was taken though the error text says {z}, {x} and {y} are
    required: every tile of the map was that one picture (a review)."""
    with pytest.raises(ConsoleConfigError, match=r"want an http\(s\) URL template with \{z\}"):
        config(BROKER_CONSOLE_TILES=tiles)
    ok = config(BROKER_CONSOLE_TILES="https://tile.example/{z}/{x}/{y}.png")
    assert ok is not None and ok.tiles == "https://tile.example/{z}/{x}/{y}.png"


def test_a_tms_tile_template_is_taken() -> None:
    """Leaflet (the page's map) reads ``{-y}`` as the TMS row order: such a template was
    refused at start for want of ``{y}`` (a review)."""
    tms = "https://tms.example/{z}/{x}/{-y}.png"
    ok = config(BROKER_CONSOLE_TILES=tms)
    assert ok is not None and ok.tiles == tms
