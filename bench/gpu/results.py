"""The check's two files, ``<gpu-slug>.json`` and ``<gpu-slug>.md``, rewritten whole after every
result: a run killed at its time limit leaves everything measured so far (a check it was in the
middle of reads ``status: running``). A run never replaces another's files: where either name is
taken, it writes ``<gpu-slug>-2.json`` and ``.md`` (``-3``, ...), the JSON's name taken atomically,
so two runs into one folder at once get two pairs.

JSON: ``meta`` (GPU, versions, budget, wall seconds) and ``parts`` -> part letter -> ``status``
and ``checks`` -> check name -> ``status`` ("ok", "failed: reason", "skipped: reason", or
"running"), ``wall_seconds``, the check's numbers, and ``rows``: the lines of the Markdown table.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

PART_TITLES = {
    "a": "The rule's cost at real size",
    "b": "Sparse video attention (SVG) at HunyuanVideo's 720p sequence",
    "c": "The CUDA code paths",
    "d": "Tencent's transformer",
    "e": "Every computed step at the GPU's speed (--attention)",
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def finite_or_none(value):
    """JSON has no NaN or infinity: non-finite floats are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def part_status(checks: dict) -> str:
    """A part is failed if any check failed, ok if any check ran ok, else its checks' skip reason."""
    statuses = [c["status"] for c in checks.values()]
    failed = [f"{name}: {c['status'][len('failed: '):]}" for name, c in checks.items() if c["status"].startswith("failed")]
    if failed:
        return "failed: " + "; ".join(failed)
    if "running" in statuses:
        return "running"
    if "ok" in statuses:
        return "ok"
    return statuses[0] if statuses else "skipped: no checks"


class Results:
    """The results of one run, and their files."""

    def __init__(self, out_dir: Path, name: str, meta: dict):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.json_path, self.md_path = free_names(out_dir, name)
        self.meta = meta
        self.parts: dict = {}
        self.started = time.perf_counter()
        self.write()  # the reserved names hold this run's meta from the start

    def start(self, part: str, check: str, title: str) -> dict:
        """A new check entry (status "running"), written at once; returns it for ``update``."""
        entry = {"title": title, "status": "running", "wall_seconds": 0.0, "rows": []}
        self.parts.setdefault(part, {"title": PART_TITLES[part], "checks": {}})["checks"][check] = entry
        self.write()
        return entry

    def update(self, entry: dict, **numbers) -> None:
        entry.update(numbers)
        self.write()

    def finish(self, entry: dict, status: str, wall_seconds: float) -> None:
        entry.update(status=status, wall_seconds=wall_seconds)
        self.write()

    def statuses(self) -> dict:
        return {f"{p}.{name}": c["status"] for p, part in self.parts.items() for name, c in part["checks"].items()}

    # ------------------------------------------------------------------ files
    def write(self) -> None:
        self.meta["wall_seconds"] = time.perf_counter() - self.started
        for part in self.parts.values():
            part["status"] = part_status(part["checks"])
        data = finite_or_none({"meta": self.meta, "parts": self.parts})
        # default=str: an odd value (a dtype, a shape) is written as text rather than stopping the run
        _replace(self.json_path, json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")
        _replace(self.md_path, self.markdown())

    def markdown(self) -> str:
        meta = self.meta
        lines = [f"# GPU check: {meta['gpu']}", ""]
        if meta.get("tiny"):
            lines += ["**--tiny run: toy shapes, these numbers say nothing about HunyuanVideo's speed.**", ""]
        lines += [
            (f"torch {meta['torch']}, CUDA {meta['cuda']}, diffusers {meta.get('diffusers')}, Python {meta['python']}, "
             f"{meta['dtype']}; budget {meta['budget_seconds']:g} s, wall {meta['wall_seconds']:.0f} s; "
             f"{meta['started_utc']}; written by `{meta['command']}` (numbers and statuses: `{self.json_path.name}`)."),
            "",
            "| part | check | what | measured | ratio |",
            "|---|---|---|---|---|",
        ]
        for letter, part in self.parts.items():
            for name, check in part["checks"].items():
                rows = check.get("rows") or []
                status = check["status"]
                if status != "ok" or not rows:
                    rows = [*rows, [check["title"], status, ""]]
                for what, measured, ratio in rows:
                    cells = (letter, name, what, measured, ratio)
                    lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
        lines += ["", ("Ratios are ours / baseline measured side by side in this run (below 1: faster); "
                       "times are medians of repeats after a warm-up, CUDA events around each call."), ""]
        return "\n".join(lines)


def free_names(out_dir: Path, name: str) -> tuple[Path, Path]:
    """``<name>.json`` and ``.md`` in ``out_dir``, or ``<name>-2``, ``-3``, ... where an earlier run's
    file has the name; the JSON is created empty here (exclusively) so no other run takes it."""
    for number in range(1, 10_000):
        stem = name if number == 1 else f"{name}-{number}"
        json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
        if md_path.exists():
            continue
        try:
            os.close(os.open(json_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return json_path, md_path
    raise FileExistsError(f"{out_dir} holds {name}.json to {name}-9999.json; clear it or pass another --out")


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- formatting for rows
def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} us"


def size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} B"


def ratio(value: float | None, faster: bool = True) -> str:
    """``0.22 (4.5x faster)`` for a time ratio; the bare ratio otherwise."""
    if value is None or not math.isfinite(value):
        return "-"
    text = f"{value:.3g}"
    if faster and value > 0:
        factor = 1 / value if value < 1 else value
        factor_text = f"{factor:.0f}" if factor >= 100 else f"{factor:.3g}"
        text += f" ({factor_text}x {'faster' if value < 1 else 'slower'})"
    return text
