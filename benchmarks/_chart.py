"""A PNG chart of a run's JSON: each contestant's ratio to the floor, per mode and loop.

Needs matplotlib (the ``bench`` extra); without it the chart is skipped with a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ("draw",)

_COLOURS = {
    "asyncmp": "#1f77b4",
    "floor": "#7f7f7f",
    "SimpleQueue reply": "#bcbd22",
    "anyio streams": "#2ca02c",
    "janus": "#d62728",
    "culsans": "#9467bd",
    "aiologic": "#8c564b",
    "BlockingPortal": "#e377c2",
    "anyio to_thread": "#17becf",
    "pykka": "#ff7f0e",
}


def draw(doc: dict[str, Any], path: Path) -> None:
    """Draw the rate modes of *doc* (as written by ``--json``) into *path*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in doc["modes"] if m["kind"] == "rate"]
    names: list[str] = []
    for m in rows:
        for name, c in m["contestants"].items():
            if c["ratio"] is not None and name not in names:
                names.append(name)
    height = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.42 * len(rows) * max(1, len(names)) ** 0.5 * 1.6))
    labels = []
    for y, m in enumerate(rows):
        labels.append(f"{m['title']} · {m['loop']}")
        present = [n for n in names if m["contestants"].get(n, {}).get("ratio") is not None]
        for k, name in enumerate(present):
            r = m["contestants"][name]["ratio"]
            offset = (k - (len(present) - 1) / 2) * height
            ax.barh(
                y + offset,
                r,
                height=height * 0.9,
                color=_COLOURS.get(name, "#333333"),
                label=name if name not in ax.get_legend_handles_labels()[1] else None,
            )
            if name == "asyncmp":
                ax.text(r, y + offset, f" {r:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log", base=2)
    ax.set_xlabel("throughput relative to the hand-written floor (log scale; 1.0 = floor)")
    meta = doc["meta"]
    ax.set_title(
        f"asyncmp benchmarks — {meta['profile']} run, median of {meta['rounds']} rounds, "
        f"Python {meta['python']}, {meta['cpus']} CPUs",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
