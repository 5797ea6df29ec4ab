"""paper_figures.style: captions broken into lines once (``wrap_lines``) -- every line fits, nothing is lost or
reordered, and each break is needed (greedy) -- and a figure's caption is drawn from those lines."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.font_manager import FontProperties

from paper_figures.style import finish, new_figure, wrap_lines

FONT = FontProperties(size=8, style="italic")
RENDERER = RendererAgg(1, 1, 72)


def measured(line: str) -> float:
    """Points, measured the way matplotlib's Agg backend measures text."""
    return RENDERER.get_text_width_height_descent(line, FONT, ismath=False)[0] if line else 0.0


def width(line: str) -> float:
    """The width ``wrap_lines`` works with: its words' measured widths and a space's between them."""
    words = line.split(" ")
    return sum(measured(w) for w in words) + (len(words) - 1) * (measured("a a") - measured("aa"))


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzMW0123456789.,;:()=-'", min_size=1, max_size=14)


@given(
    st.lists(st.lists(words, min_size=1, max_size=30), min_size=1, max_size=3),
    st.floats(min_value=20.0, max_value=400.0),
)
def test_wrapped_lines_fit_keep_every_word_and_break_only_where_needed(paragraphs, limit):
    texts = [" ".join(p) for p in paragraphs]
    wrapped = wrap_lines("\n".join(texts), limit, FONT)
    # each paragraph is wrapped on its own
    assert wrapped == "\n".join(wrap_lines(t, limit, FONT) for t in texts)
    for text, words_in in zip(texts, paragraphs, strict=True):
        lines = wrap_lines(text, limit, FONT).split("\n")
        assert " ".join(lines).split(" ") == words_in  # the same words in the same order
        for line in lines:
            assert width(line) <= limit or " " not in line  # only a lone word may be wider
            assert (
                abs(measured(line) - width(line)) <= 0.02 * width(line) + 1.0
            )  # kerning: a point or two
        for line, nxt in zip(lines[:-1], lines[1:], strict=True):  # greedy: each break is needed
            assert width(f"{line} {nxt.split(' ')[0]}") > limit


def test_a_figure_caption_is_its_wrapped_lines():
    fig, _ = new_figure(2)
    caption = " ".join(f"word{i}" for i in range(200))
    finish(fig, "title", caption)
    (text,) = [t for t in fig.texts if t.get_text() != "title"]
    assert text.get_text() == wrap_lines(caption, fig.get_figwidth() * 72, FONT)
    assert text.get_text().count("\n") >= 2 and not text.get_wrap()
    plt.close(fig)


@pytest.mark.parametrize("text", ["", "one", "a  b"])
def test_degenerate_text_is_kept(text):
    assert wrap_lines(text, 100.0, FONT).replace("\n", " ") == text
