"""The benchmark's table (markdown) and its speed-vs-PSNR plot (PNG, one curve per method)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _fmt(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


FLAG = "(!)"


def _timing_line(meta: dict) -> str:
    timing = meta.get("timing")
    if not timing:
        return f"Speedup: fastest of {meta.get('repeats', 1)} run(s) per video against the baseline of the same run."
    rounds = timing.get("rounds", 1)
    return (f"Speedup: per video the fastest of {timing['repeats']} run(s) of each method, against the fastest of "
            f"the baseline's runs interleaved with them in the same round ({timing['baseline_runs_per_video']} a "
            f"video in all; the baseline timed before every {timing['baseline_every']} method(s) and after the last"
            + ("; methods that leave the transformer patched, cache-dit, in a second round" if rounds > 1 else "")
            + "), after one untimed warm-up. "
            f"{FLAG}: a speedup above calls / computed, the most that skipping calls can give where every "
            f"computed call runs the whole transformer (EasyCache, NaviCache, TeaCache, FirstBlockCache, MagCache, DBCache): a timing "
            f"artefact, not a result.")


def _branches(row: dict) -> str:
    """``cond 20 / 50, uncond 20 / 50``: computed / calls of each guidance branch."""
    parts = [f"{name.replace('_', '+')} {counts['computed']} / {counts['calls']}"
             for name, counts in sorted(row.get("branches", {}).items())]
    return ", ".join(parts) or "-"


def _detail(value) -> str:
    """A method's detail in a line: numbers to 4 significant digits, lists and dicts inline."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_detail(v) for v in value) + "]"
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k.replace('_', ' ')} {_detail(v)}" for k, v in value.items()) + ")"
    return str(value)


BASELINES = ("no cache", "no cache, batched guidance")  # not caches: the references the speedups are of
IDENTICAL = 100.0  # the PSNR the bench gives identical videos


def ours(row: dict) -> bool:
    """A row of EasyCache, any variant the project offers (the rule, or options beyond it)."""
    return row["method"].startswith("EasyCache")


def rule_alone(row: dict) -> bool:
    """A row of EasyCache's rule itself, without an option beyond it."""
    return row["method"] == "EasyCache"


def envelope(rows: list[dict], mine=ours) -> dict:
    """Every peer's point (speedup s, PSNR p) against EasyCache's curve: the front of the points of
    ``mine`` (all EasyCache variants by default; those no other is both faster and better than),
    joined by straight lines. A peer point is *beaten* when a front point is at least as fast with at
    least its PSNR, or it lies on or under the line between two; *above* the curve by ``p`` minus the
    line's PSNR at ``s``; *outside* the curve's speeds (slower than its slowest point with more PSNR,
    or faster than its fastest) where the sweep has nothing to compare. Points slower than no cache
    (below 1x) are beaten by no cache itself, which EasyCache at threshold 0 is, and counted apart."""
    points = sorted((r["speedup"], r["psnr"]) for r in rows if "unavailable" not in r and mine(r) and r["psnr"] is not None)
    front: list[tuple[float, float]] = []
    for speed, psnr in reversed(points):  # fastest first; keep those better than every faster one
        if not front or psnr > front[-1][1]:
            front.append((speed, psnr))
    front.reverse()
    peers = [r for r in rows if "unavailable" not in r and not ours(r) and r["method"] not in BASELINES
             and r["psnr"] is not None]
    result = {"peer_points": len(peers), "beaten": 0, "slower_than_no_cache": 0, "above": [], "outside": []}
    for row in peers:
        speed, psnr = row["speedup"], row["psnr"]
        point = {"method": row["method"], "setting": row["setting"], "speedup": speed, "psnr": psnr}
        if speed < 1.0:
            result["slower_than_no_cache"] += 1
        elif any(s >= speed and p >= psnr for s, p in front):
            result["beaten"] += 1
        elif not front or speed < front[0][0] or speed > front[-1][0]:
            result["outside"].append(point)
        else:
            line = _on_line(front, speed)
            if psnr <= line:
                result["beaten"] += 1
            else:
                result["above"].append({**point, "easycache_psnr": line, "margin": psnr - line})
    return result


def _on_line(front: list[tuple[float, float]], speed: float) -> float:
    """The PSNR of the line through the front's points at ``speed`` (within their speeds)."""
    for (s0, p0), (s1, p1) in zip(front, front[1:]):
        if s0 <= speed <= s1:
            return p0 + (p1 - p0) * (speed - s0) / (s1 - s0) if s1 > s0 else max(p0, p1)
    return front[0][1]


def _envelope_lines(rows: list[dict]) -> list[str]:
    lines = []
    for mine, what in ((ours, "EasyCache's curve (all its variants"), (rule_alone, "the rule alone (EasyCache, no option")):
        if not any(mine(r) and "unavailable" not in r for r in rows):
            continue
        e = envelope(rows, mine)
        text = (f"Against {what}: its best points joined by lines; a peer point is beaten when one of them is at "
                f"least as fast with at least its PSNR, whole video, or it lies under a line): {e['beaten']} of "
                f"{e['peer_points']} peer points beaten"
                + (f", {e['slower_than_no_cache']} slower than no cache (below 1x; no cache, which EasyCache at "
                   f"threshold 0 is bit for bit, beats them)" if e["slower_than_no_cache"] else ""))
        above = [f"{a['method']} {a['setting']} ({a['speedup']:.2f}x, {a['psnr']:.2f} dB: +{a['margin']:.2f} dB "
                 f"over the curve's {a['easycache_psnr']:.2f} dB)" for a in e["above"]]
        outside = [f"{a['method']} {a['setting']} ({a['speedup']:.2f}x, {a['psnr']:.2f} dB)" for a in e["outside"]]
        text += "; above it: " + "; ".join(above) if above else "; none above it"
        if outside:
            text += "; outside its speeds (no point of it as slow, or as fast, to compare): " + "; ".join(outside)
        lines += ["", text + "."]
    return lines


def write_table(rows: list[dict], meta: dict, path: Path) -> str:
    by_branch = any(set(row.get("branches", {})) - {"None", "cond"} for row in rows)  # guidance branches
    guidance = ""
    if meta.get("calls_per_step") is not None:
        guidance = (f" {meta['calls_per_step']:g} transformer call(s) per step without a cache "
                    f"({'classifier-free guidance, one call per branch' if meta['calls_per_step'] >= 2 else 'no guidance branches'}).")
    lines = [
        f"Model `{meta['model']}`, {len(meta['prompts'])} prompts x {len(meta['seeds'])} seeds, "
        f"{meta['steps']} steps, {meta['device']}, torch {meta['torch']}; LPIPS: {meta['lpips']}.{guidance}",
        "PSNR (whole video) is the PSNR of the whole video's MSE (EasyCache's protocol); PSNR (frame mean) "
        "averages per-frame PSNRs (cache-dit / Sparse-VideoGen), never lower. Identical videos: 100 dB.",
        _timing_line(meta),
        "",
        "| method | setting | computed / calls |" + (" per branch (cond+uncond: one batched call) |" if by_branch else "")
        + " speedup | PSNR (whole video) | PSNR (frame mean) | SSIM | LPIPS | peak memory (MiB) |",
        "|---|---|---|" + ("---|" if by_branch else "") + "---|---|---|---|---|---|",
    ]
    flagged = []
    for row in rows:
        if "unavailable" in row:
            lines.append(f"| {row['method']} | {row['setting'] or '-'} | not run: {row['unavailable']} |||||||"
                         + ("|" if by_branch else ""))
            continue
        memory = row["peak_memory_bytes"]
        flag = ""
        if row.get("speedup_exceeds_calls_ratio"):
            flag = f" {FLAG}"
            flagged.append(f"{row['method']} {row['setting']}".strip() +
                           f": {row['speedup']:.2f}x against {row['calls']} / {row['computed']} = {row['calls_ratio']:.2f}x")
        lines.append(
            f"| {row['method']} | {row['setting'] or '-'} | {row['computed']} / {row['calls']} | "
            + (f"{_branches(row)} | " if by_branch else "") +
            f"{row['speedup']:.2f}x{flag} | {_fmt(row['psnr'], 2)} | {_fmt(row.get('psnr_frame_mean'), 2)} | "
            f"{_fmt(row['ssim'], 4)} | {_fmt(row['lpips'], 4)} | "
            f"{'-' if memory is None else f'{memory / 2**20:.0f}'} |"
        )
    lines += _envelope_lines(rows)
    for name, details in meta.get("details", {}).items():
        lines += ["", f"{name}: " + "; ".join(f"{key.replace('_', ' ')}: {_detail(value)}"
                                             for key, value in details.items()) + "."]
    if flagged:
        lines += ["", f"{FLAG} Speedup above calls / computed (timing artefact; rerun with more --repeats on an idle "
                      f"machine): " + "; ".join(flagged) + "."]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def write_plot(rows: list[dict], meta: dict, path: Path) -> None:
    """One curve per method, speedup against PSNR, its points in the order of its settings: EasyCache's
    variants solid, the peers dashed, each its own colour and marker; identical videos (100 dB:
    nothing skipped) are left out of the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if "unavailable" in row or row["method"] in BASELINES or row["psnr"] is None or row["psnr"] >= IDENTICAL:
            continue
        curves.setdefault(row["method"], []).append((row["speedup"], row["psnr"]))
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    colours = [*plt.get_cmap("tab10").colors, "black", "darkgoldenrod", "darkslategray", "indigo", "olive"]
    mine = sorted(name for name in curves if name.startswith("EasyCache"))
    peers = sorted(name for name in curves if name not in mine)
    markers = "sv^<>DPXh*p"
    for i, name in enumerate(mine + peers):
        points = curves[name]  # in the order of its settings: the sweep's path
        solid = name in mine
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, color=colours[i % len(colours)],
                ls="-" if solid else "--", lw=2.0 if solid else 1.2, ms=5 if solid else 4,
                marker="o" if solid else markers[(i - len(mine)) % len(markers)])
    flagged = [(row["speedup"], row["psnr"]) for row in rows
               if row.get("speedup_exceeds_calls_ratio") and row.get("psnr") is not None]
    if flagged:
        ax.scatter([p[0] for p in flagged], [p[1] for p in flagged], marker="x", s=80, color="red", zorder=3,
                   label="speedup above calls / computed (timing artefact)")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("wall-clock speedup over no cache (same run)")
    ax.set_ylabel("PSNR of the whole video's MSE against no cache (dB)")
    ax.set_title(f"{meta['model']}: {meta['steps']} steps, {meta['device']} (identical videos, 100 dB, not drawn)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def rewrite(folder: Path) -> None:
    """results.md and speed_psnr.png again from a run's results.json (the same rows and meta), e.g.
    after a change to this module: ``python bench/report.py bench/results/demo``."""
    data = json.loads((folder / "results.json").read_text())
    write_table(data["rows"], data["meta"], folder / "results.md")
    write_plot(data["rows"], data["meta"], folder / "speed_psnr.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Rewrite results.md and speed_psnr.png from each run folder's "
                                     "results.json.")
    parser.add_argument("folders", nargs="*", type=Path, metavar="FOLDER", help="a run's folder (its results.json)")
    return parser


if __name__ == "__main__":
    for folder in build_parser().parse_args().folders:
        rewrite(folder)
