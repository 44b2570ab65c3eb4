"""The benchmark's table (markdown) and its speed-vs-PSNR plot (PNG, one curve per method)."""

from __future__ import annotations

from pathlib import Path


def _fmt(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


FLAG = "(!)"


def _timing_line(meta: dict) -> str:
    timing = meta.get("timing")
    if not timing:
        return f"Speedup: fastest of {meta.get('repeats', 1)} run(s) per video against the baseline of the same run."
    return (f"Speedup: per video the fastest of {timing['repeats']} run(s) of each method, against the fastest of "
            f"the baseline's {timing['baseline_runs_per_video']} runs interleaved with them (the baseline timed "
            f"before every {timing['baseline_every']} method(s) and after the last), after one untimed warm-up. "
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if "unavailable" in row or row["method"] == "no cache" or row["psnr"] is None:
            continue
        curves.setdefault(row["method"], []).append((row["speedup"], row["psnr"]))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, points in sorted(curves.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    flagged = [(row["speedup"], row["psnr"]) for row in rows
               if row.get("speedup_exceeds_calls_ratio") and row.get("psnr") is not None]
    if flagged:
        ax.scatter([p[0] for p in flagged], [p[1] for p in flagged], marker="x", s=80, color="red", zorder=3,
                   label="speedup above calls / computed (timing artefact)")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("wall-clock speedup over no cache (same run)")
    ax.set_ylabel("PSNR of the whole video's MSE against no cache (dB)")
    ax.set_title(f"{meta['model']}: {meta['steps']} steps, {meta['device']}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
