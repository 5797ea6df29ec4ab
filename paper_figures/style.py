"""The shared look of every figure: palette, theory-vs-measured line styles, captions, saving.

Theory is always a black dashed line; measured or simulated data are coloured markers or solid lines, so the two
can never be confused. Every figure carries a caption line (what it shows, from what data) under its panels.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

__all__ = ["THEORY", "PALETTE", "color_for", "new_figure", "finish", "save"]

THEORY = {"color": "black", "linestyle": "--", "linewidth": 1.6}
PALETTE = sns.color_palette("colorblind", 10)
_NAMED = {
    "majority_voting": PALETTE[0],
    "ground_truth": PALETTE[2],
    "self_verification": PALETTE[3],
    "self_certainty": PALETTE[1],
    "token_entropy": PALETTE[5],
    "trajectory_entropy": PALETTE[4],
    "probability": PALETTE[6],
    "vote_share": PALETTE[9],
}


def color_for(label: str, i: int = 0):
    """A stable colour for a reward name (the same in every figure), else the i-th palette colour."""
    for name, c in _NAMED.items():
        if label.startswith(name):
            return c
    return PALETTE[i % len(PALETTE)]


def new_figure(n_panels: int, *, width_per_panel: float = 4.2, height: float = 3.6):
    """A figure with ``n_panels`` axes in one row; returns (fig, list of axes)."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.0)
    fig, axes = plt.subplots(
        1,
        n_panels,
        figsize=(width_per_panel * n_panels, height),
        squeeze=False,
        layout="constrained",
    )
    return fig, list(axes[0])


def finish(fig, title: str, caption: str):
    """Title on top, the caption line (what it shows, from what data) at the bottom."""
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.get_layout_engine().set(h_pad=0.1)
    fig.text(0.5, -0.01, caption, ha="center", va="top", fontsize=8, style="italic", wrap=True)
    return fig


def save(
    fig,
    out_dir: str | Path,
    name: str,
    *,
    formats=("png", "pdf"),
    dpi: int = 110,
    compact: bool = True,
) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format; closes it; returns the paths.

    With ``compact`` a PNG is stored with a 256-colour adaptive palette (Pillow, a matplotlib dependency):
    about a third of the bytes, with no visible change for line plots, so a committed gallery stays small.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out / f"{name}.{fmt}"
        if fmt == "png" and compact:
            from PIL import Image

            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
            buf.seek(0)
            with Image.open(buf) as im:
                im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
                    p, optimize=True
                )
        else:
            fig.savefig(p, dpi=dpi, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths
