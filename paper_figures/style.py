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
from matplotlib.font_manager import FontProperties  # noqa: E402

__all__ = ["THEORY", "PALETTE", "color_for", "new_figure", "finish", "save", "wrap_lines"]

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
    """Title on top, the caption line (what it shows, from what data) at the bottom, broken into lines as wide as
    the figure (:func:`wrap_lines`)."""
    fig.suptitle(title, fontsize=11, fontweight="bold")
    fig.get_layout_engine().set(h_pad=0.1)
    font = FontProperties(size=8, style="italic")
    lines = wrap_lines(caption, fig.get_figwidth() * 72, font)
    fig.text(0.5, -0.01, lines, ha="center", va="top", fontproperties=font)
    return fig


def wrap_lines(text: str, width: float, prop: FontProperties) -> str:
    """``text`` with each of its lines broken at spaces, greedily, into lines at most ``width`` points wide in the
    font ``prop`` (a single word wider than that keeps a line of its own). A line's width is taken as the sum of
    its words' widths and a space's between them (each measured once by the Agg renderer; kerning across a space
    is ignored, a fraction of a point).

    What matplotlib's ``wrap=True`` does at every draw, done once: a figure is drawn about eight times when it is
    saved as PNG and PDF with a tight bounding box, and each draw re-measured the caption's growing lines (about a
    third of the CPU time of drawing every figure).
    """
    from matplotlib.backends.backend_agg import RendererAgg

    renderer = RendererAgg(1, 1, 72)  # at 72 dpi one pixel is one point
    sizes: dict[str, float] = {}

    def measure(s: str) -> float:
        if s not in sizes:
            sizes[s] = (
                renderer.get_text_width_height_descent(s, prop, ismath=False)[0] if s else 0.0
            )
        return sizes[s]

    space = measure("a a") - measure("aa")
    out = []
    for paragraph in text.split("\n"):
        line, used = [], 0.0
        for word in paragraph.split(" "):
            grown = used + space + measure(word) if line else measure(word)
            if line and grown > width:
                out.append(" ".join(line))
                line, grown = [], measure(word)
            line.append(word)
            used = grown
        out.append(" ".join(line))
    return "\n".join(out)


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
