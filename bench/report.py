"""The benchmark's table (markdown) and its speed-vs-PSNR plot (PNG, one curve per method)."""

from __future__ import annotations

from pathlib import Path


def _fmt(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def write_table(rows: list[dict], meta: dict, path: Path) -> str:
    lines = [
        f"Model `{meta['model']}`, {len(meta['prompts'])} prompts x {len(meta['seeds'])} seeds, "
        f"{meta['steps']} steps, {meta['device']}, torch {meta['torch']}; LPIPS: {meta['lpips']}.",
        "PSNR (whole video) is the PSNR of the whole video's MSE (EasyCache's protocol); PSNR (frame mean) "
        "averages per-frame PSNRs (cache-dit / Sparse-VideoGen), never lower. Identical videos: 100 dB.",
        "",
        "| method | setting | computed / calls | speedup | PSNR (whole video) | PSNR (frame mean) | SSIM | LPIPS "
        "| peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "unavailable" in row:
            lines.append(f"| {row['method']} | {row['setting'] or '-'} | not run: {row['unavailable']} |||||||")
            continue
        memory = row["peak_memory_bytes"]
        lines.append(
            f"| {row['method']} | {row['setting'] or '-'} | {row['computed']} / {row['calls']} | "
            f"{row['speedup']:.2f}x | {_fmt(row['psnr'], 2)} | {_fmt(row.get('psnr_frame_mean'), 2)} | "
            f"{_fmt(row['ssim'], 4)} | {_fmt(row['lpips'], 4)} | "
            f"{'-' if memory is None else f'{memory / 2**20:.0f}'} |"
        )
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
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("wall-clock speedup over no cache (same run)")
    ax.set_ylabel("PSNR of the whole video's MSE against no cache (dB)")
    ax.set_title(f"{meta['model']}: {meta['steps']} steps, {meta['device']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
