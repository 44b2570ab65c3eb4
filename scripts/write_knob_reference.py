#!/usr/bin/env python3
"""Write docs/knobs.md: every flag of the entries, with its default, each model's preset and its help,
made from the config dataclasses (``EasyCacheConfig``, ``SVGConfig``), the presets and the entries'
own parser. ``tests/test_docs.py`` fails when the page in the repository differs from what this
writes, so a new knob or a changed help text is one run of this script:

    python scripts/write_knob_reference.py
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PAGE = ROOT / "docs" / "knobs.md"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _config_rows(config_cls: type, naming: str) -> list[str]:
    from easycache import cli

    rows = []
    for field in cli.cli_fields(config_cls):
        flags = " ".join(f"`{f}`" for f in (cli.flag_of(field, naming), *field.metadata.get("aliases", ())))
        choices = field.metadata.get("choices")
        default = f"`{field.default}`" + (f" (one of {', '.join(map(str, choices))})" if choices else "")
        rows.append(f"| {flags} | `{field.name}` | {default} | {_cell(field.metadata.get('help', ''))} |")
    return rows


def _entry_rows() -> list[str]:
    """The flags every entry adds besides the configs' (``cli.entry_parser``)."""
    from easycache import cli
    from easycache.cache import EasyCacheConfig

    parser = cli.entry_parser("entry", "")
    config_flags = {cli.flag_of(f, cli.EASYCACHE_FLAG) for f in cli.cli_fields(EasyCacheConfig)}
    rows = []
    for action in parser._actions:
        flags = [s for s in action.option_strings if s.startswith("--")]
        if not flags or flags[0] in config_flags or flags[0].startswith("--no-easycache-"):
            continue
        default = "" if action.default in (None, False, argparse.SUPPRESS) else f"`{action.default}`"
        choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
        rows.append(f"| `{flags[0]}` | {default}{choices} | {_cell(action.help or '')} |")
    return rows


def _preset_rows() -> list[str]:
    from easycache.presets import PRESETS

    return [f"| `{name}` | {p.thresh} | {p.warmup_steps} | {_cell(p.source)} |" for name, p in PRESETS.items()]


def render() -> str:
    from easycache import cli
    from easycache.cache import EasyCacheConfig
    from easycache.sparse.config import SVGConfig

    lines = [
        "# Every flag and knob",
        "",
        "<!-- Written by scripts/write_knob_reference.py from the config dataclasses, the presets and",
        "     the entries' parser; tests/test_docs.py fails when it is stale. Do not edit by hand. -->",
        "",
        "```bash",
        "python3 easycache_sample_video.py --help      # the same flags, with the backend's own",
        "```",
        "",
        "## EasyCache (`EasyCacheConfig`, every entry)",
        "",
        "A flag left out takes the model's preset (below), else the default shown.",
        "",
        "| flag | field | default | what it trades |",
        "|---|---|---|---|",
        *_config_rows(EasyCacheConfig, cli.EASYCACHE_FLAG),
        "",
        "## Per-model presets (`easycache/presets.py`)",
        "",
        "| pipeline | thresh | warmup_steps | source |",
        "|---|---|---|---|",
        *_preset_rows(),
        "",
        "## The entries' own flags",
        "",
        "| flag | default | what it does |",
        "|---|---|---|",
        *_entry_rows(),
        "",
        "## Sparse video attention (`SVGConfig`, `hyvideo_svg_easycache.py`)",
        "",
        "| flag | field | default | what it trades |",
        "|---|---|---|---|",
        *_config_rows(SVGConfig, cli.SVG_FLAG),
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """No flags: the page's path and content are fixed."""
    return argparse.ArgumentParser(description=__doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
