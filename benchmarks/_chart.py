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
    # Each row gets one bar per contestant it measured, so rows differ in height.
    plan: list[tuple[str, list[tuple[float, str, float]]]] = []
    y = 0.0
    centres = []
    for m in rows:
        present = [(n, c["ratio"]) for n, c in m["contestants"].items() if c["ratio"] is not None]
        bars = [(y + k, name, r) for k, (name, r) in enumerate(present)]
        centres.append(y + (len(present) - 1) / 2 if present else y)
        plan.append((f"{m['title']} · {m['loop']}", bars))
        y += max(1, len(present)) + 0.9
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.13 * y))
    seen: set[str] = set()
    for _, bars in plan:
        for pos, name, r in bars:
            ax.barh(
                pos,
                r,
                height=0.85,
                color=_COLOURS.get(name, "#333333"),
                label=None if name in seen else name,
            )
            seen.add(name)
            if name == "asyncmp":
                ax.text(r, pos, f" {r:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(centres, [label for label, _ in plan], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log", base=2)
    ax.set_xlabel("throughput relative to the hand-written floor (log scale; 1.0 = floor)")
    meta = doc["meta"]
    ax.set_title(
        f"asyncmp benchmarks — {meta['profile']} run, median of {meta['rounds']} rounds, "
        f"Python {meta['python']}, {meta['cpus']} CPUs",
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
