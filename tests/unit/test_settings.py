"""Engine settings: every one documented, and nonsense refused at start."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from msgspec.structs import fields

from broker.settings import EngineConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_engine_setting_has_a_row_in_the_docs():
    doc = DOC.read_text(encoding="utf-8")
    missing = [f.name for f in fields(EngineConfig) if f"| `{f.name}` |" not in doc]
    assert missing == []


@pytest.mark.parametrize("value", [float("inf"), 1e12])
def test_an_infinite_or_huge_setting_fails_naming_it(value: float) -> None:
    """``--lookahead-s inf`` (or BROKER_ENGINE_LOOKAHEAD_S=inf) was taken and crashed the zone
    builds with a traceback (an operator review)."""
    with pytest.raises(ValueError, match="lookahead_s"):
        EngineConfig(lookahead_s=value)
    with pytest.raises(msgspec.ValidationError, match="lookahead_s"):
        msgspec.json.decode(b'{"lookahead_s": 1e12}', type=EngineConfig)


def test_a_negative_setting_fails_naming_it():
    with pytest.raises(ValueError, match="lookahead_s"):
        EngineConfig(lookahead_s=-1.0)
    with pytest.raises(ValueError, match="max_vertices"):
        EngineConfig(max_vertices=4)
