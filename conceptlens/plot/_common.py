"""Shared helpers of the plotting functions: a new figure without pyplot, text formats."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from conceptlens.exceptions import DataError, UnknownNameError

# a diverging colour map for signed quantities and a sequential one for metrics
DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"


_F = TypeVar("_F", bound=Callable[..., Any])


def _figures(out: Any) -> list[Any]:
    """The figures behind a plotting function's return value (an Axes or an array of them)."""
    axes = np.ravel(np.asarray(out, dtype=object)) if not hasattr(out, "figure") else [out]
    figs: list[Any] = []
    for a in axes:
        fig = getattr(a, "figure", None)
        if fig is not None and all(fig is not f for f in figs):
            figs.append(fig)
    return figs


def literal_text(func: _F) -> _F:
    """Draw every text of the plot literally: no mathtext from ``$`` in names.

    Concept, class, group and sample names come from users' files; matplotlib reads a
    string with two ``$`` as mathtext, so ``"a $x^2$ b"`` would be typeset and
    ``"a $\\frac{$ b"`` would stop the drawing with a parse error.  Texts made during the
    call get ``text.parse_math = False``, and afterwards every text of the figure (also
    the titles of Axes the caller passed in) is set so.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib
        from matplotlib.text import Text

        with matplotlib.rc_context({"text.parse_math": False}):
            out = func(*args, **kwargs)
        for fig in _figures(out):
            for text in fig.findobj(Text):
                text.set_parse_math(False)
        return out

    return wrapper  # type: ignore[return-value]


def get_ax(ax: Any = None, figsize: tuple[float, float] = (6.4, 4.8)) -> Any:
    """``ax`` itself, or the one Axes of a new figure that pyplot does not track."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def fmt_ci(est: float, lo: float, hi: float, digits: int = 3) -> str:
    """``0.895 [0.870, 0.921]``; ``n/a`` for a missing estimate."""
    if not np.isfinite(est):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def check_dims(obj: Any, dims: tuple[str, ...], what: str, hint: str) -> None:
    """Raise :class:`DataError` unless ``obj`` is labelled with ``dims``."""
    have = tuple(getattr(obj, "dims", ()))
    missing = [d for d in dims if d not in have]
    if missing:
        raise DataError(f"{what} needs dims {dims}, got {have}; {hint}")


def pick(values: Any, wanted: Any, name: str) -> Any:
    """Check that ``wanted`` is one of ``values`` (a coordinate), naming the choices."""
    have = [str(v) for v in np.asarray(values).ravel()]
    if str(wanted) not in have:
        raise UnknownNameError(f"unknown {name} {wanted!r}; available: {have}")
    return wanted


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def register_notebook_display(shell: Any = None) -> bool:
    """Let Jupyter show the figures of ``conceptlens.plot`` (called on import).

    The figures are not tracked by pyplot, so Jupyter's inline backend never shows them
    and, without ``%matplotlib inline``, a returned ``Figure`` or ``Axes`` shows as text.
    This registers PNG display formatters for ``Figure`` and ``Axes`` in the running
    IPython shell that render only figures pyplot does not manage; pyplot's own figures
    keep whatever display they had (the formatter registered before, or none), so nothing
    is shown twice. Outside IPython it does nothing.

    Returns
    -------
    bool
        Whether formatters were registered.
    """
    import sys

    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return False
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    png = formatters["image/png"]
    for kind, figure_of in ((Figure, lambda f: f), (Axes, lambda a: a.figure)):
        try:
            before = png.lookup_by_type(kind)
        except KeyError:
            before = None
        if getattr(before, "_conceptlens", False):
            continue  # registered already

        def show(obj: Any, figure_of: Any = figure_of, before: Any = before) -> Any:
            fig = figure_of(obj)
            if getattr(fig.canvas, "manager", None) is None:  # not a pyplot figure
                return _png(fig)
            return before(obj) if before is not None else None

        show._conceptlens = True  # type: ignore[attr-defined]
        png.for_type(kind, show)
    return True
