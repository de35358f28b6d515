"""Jupyter shows conceptlens figures (untracked by pyplot) and leaves pyplot's alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("IPython")


def _shell():
    from IPython.core.formatters import DisplayFormatter

    return SimpleNamespace(display_formatter=DisplayFormatter())


def test_returned_axes_and_figures_display_as_png():
    from conceptlens.plot._common import get_ax, register_notebook_display

    shell = _shell()
    ax = get_ax()
    ax.plot([0, 1], [1, 0])
    data, _ = shell.display_formatter.format(ax)
    assert "image/png" not in data  # before: text only, what users saw
    assert register_notebook_display(shell)
    for obj in (ax, ax.figure):
        data, _ = shell.display_formatter.format(obj)
        assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_pyplot_figures_keep_their_previous_display_and_nothing_is_wrapped_twice():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from conceptlens.plot._common import register_notebook_display

    shell = _shell()
    png = shell.display_formatter.formatters["image/png"]
    png.for_type(Figure, lambda fig: b"inline backend")  # what %matplotlib inline registers
    assert register_notebook_display(shell) and register_notebook_display(shell)
    fig = plt.figure()
    try:
        fig.add_subplot().plot(np.arange(3))
        assert shell.display_formatter.format(fig)[0]["image/png"] == b"inline backend"
        # Axes of a pyplot figure had no image display before, and get none now
        assert "image/png" not in shell.display_formatter.format(fig.axes[0])[0]
    finally:
        plt.close(fig)
    untracked = Figure()
    untracked.add_subplot()
    assert shell.display_formatter.format(untracked)[0]["image/png"][:4] == b"\x89PNG"


def test_outside_ipython_nothing_is_registered():
    from conceptlens.plot._common import register_notebook_display

    assert register_notebook_display(SimpleNamespace()) is False
