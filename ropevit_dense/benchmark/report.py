"""The benchmark's outputs: a markdown table with the ratios to both floors, a CSV and a plot."""

from __future__ import annotations

import csv
from pathlib import Path

HEADER = ("| backbone | layout | position | input | step | median (s) | min (s) | x none | x timm "
          "| peak mem. increase (MB) | x none | x timm | throughput (img/s) |")


def _key(r: dict) -> tuple:
    return r["arch"], r["layout"], r["size"], bool(r.get("compile")), r.get("step", "forward")


def _ratio(value: float, floor: dict, field: str, fmt: str) -> str:
    if floor is None or floor[field] <= 0:
        return "-"
    return format(value / floor[field], fmt)


def markdown(rows: list[dict]) -> str:
    """One line per row. ``x none`` compares with the row of the same backbone, layout, size and step without
    position encoding, ``x timm`` with timm's model (``-`` where a floor was not measured). Latency ratios compare
    the fastest of the round-robin repeats (``min``): what a step costs without interference from the rest of the
    machine, which only ever adds time and moves the medians of identical models by a few percent on a shared CPU.
    With compiled rows a last column gives each one's speed-up over its eager twin (also from the fastest steps)."""
    floors = {name: {_key(r): r for r in rows if r["mode"] == name} for name in ("none", "timm")}
    eager = {(*_key(r)[:3], _key(r)[4], r["mode"]): r for r in rows if not r.get("compile")}
    compiled = any(r.get("compile") for r in rows)
    lines = [HEADER + (" speed-up over eager |" if compiled else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if compiled else "")]
    for r in rows:
        none, timm = floors["none"].get(_key(r)), floors["timm"].get(_key(r))
        mode = f"{r['mode']} (compiled)" if r.get("compile") else r["mode"]
        line = (f"| {r['arch']} | {r['layout']} | {mode} | {r['size']}x{r['size']} | {r.get('step', 'forward')} "
                f"| {r['median_s']:.3f} | {r['min_s']:.3f} | {_ratio(r['min_s'], none, 'min_s', '.3f')} "
                f"| {_ratio(r['min_s'], timm, 'min_s', '.3f')} | {r['peak_increase_mb']:.0f} "
                f"| {_ratio(r['peak_increase_mb'], none, 'peak_increase_mb', '.2f')} "
                f"| {_ratio(r['peak_increase_mb'], timm, 'peak_increase_mb', '.2f')} | {r['throughput']:.2f} |")
        if compiled:
            e = eager.get((*_key(r)[:3], _key(r)[4], r["mode"])) if r.get("compile") else None
            line += f" {e['min_s'] / r['min_s']:.2f} |" if e else " - |"
        lines.append(line)
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    """Every row with every field."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path) -> None:
    """Latency and peak memory against input size: one colour per backbone / config and layout, dashed for the
    floors, one marker per position mode (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        label = r["mode"] + (" (compiled)" if r.get("compile") else "") + (" train" if r.get("step") == "train" else "")
        groups.setdefault((r["arch"], r["layout"], label), []).append(r)
    models = list(dict.fromkeys((a, lay) for a, lay, _ in groups))
    modes = list(dict.fromkeys(m for _, _, m in groups))
    ncol = 2 if len(models) > 1 else 4
    legend_rows = -(-len(groups) // ncol)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2 + 0.2 * legend_rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^v<>pX*"
    for (arch, layout, mode), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["size"])
        model = models.index((arch, layout))
        color = colors[(model if len(models) > 1 else modes.index(mode)) % len(colors)]
        label = f"{arch} ({layout}) {mode}" if len(models) > 1 else mode
        style = dict(color=color, marker=markers[modes.index(mode) % len(markers)], markersize=4,
                     linestyle="--" if mode.split()[0] in ("none", "timm") else "-", label=label)
        axes[0].plot([r["size"] for r in rs], [r["median_s"] * 1000 for r in rs], **style)
        axes[1].plot([r["size"] for r in rs], [r["peak_increase_mb"] for r in rs], **style)
    batch = rows[0]["batch"]
    axes[0].set(xlabel="input side (pixels)", ylabel=f"median latency, batch {batch} (ms)")
    axes[1].set(xlabel="input side (pixels)", ylabel="peak memory increase (MB)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xticks(sorted({r["size"] for r in rows}))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    device = rows[0]["device"] + (", bf16" if rows[0]["bf16"] else "")
    fig.suptitle(f"{device}; dashed: floors (no position encoding; timm)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07 * legend_rows / (1 + 0.06 * legend_rows) + 0.02, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
