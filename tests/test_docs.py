"""The user docs stay true: the generated knob reference matches the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _writer():
    spec = importlib.util.spec_from_file_location("write_knob_reference", ROOT / "scripts" / "write_knob_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_knob_reference_is_what_the_code_says():
    writer = _writer()
    assert writer.PAGE.read_text(encoding="utf-8") == writer.render(), (
        "docs/knobs.md is stale: run python scripts/write_knob_reference.py")


def test_the_knob_reference_names_every_flag_an_entry_parses():
    """A flag the page does not name would be a knob a reader cannot find (the generator's filter can fail)."""
    import easycache_sample_video
    import hyvideo_svg_easycache

    page = (ROOT / "docs" / "knobs.md").read_text(encoding="utf-8")
    for parser in (easycache_sample_video.build_parser(), hyvideo_svg_easycache.build_parser()):
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and not flag.startswith("--no-easycache-") and flag != "--no-record_attention":
                    assert f"`{flag}`" in page, flag
