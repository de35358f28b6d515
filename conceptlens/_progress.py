"""Progress reporting that the CLI's ``--quiet`` flag (or ``CONCEPTLENS_QUIET=1``) silences.

Two kinds: :func:`progress` wraps a loop in a tqdm bar on stderr that appears only once the
loop has run for ``delay`` seconds (so fast calls print nothing), and :func:`step` announces
one long call that has no loop to count (loading a model, verifying weights).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["is_quiet", "progress", "set_quiet", "step"]

_QUIET = os.environ.get("CONCEPTLENS_QUIET", "") not in ("", "0")

# Seconds a loop runs before its bar appears; shorter loops stay silent.
DELAY = 1.0


def set_quiet(quiet: bool) -> None:
    """Turn progress bars off (``True``) or on (``False``) for this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress output is silenced (``--quiet`` or ``CONCEPTLENS_QUIET=1``)."""
    return _QUIET


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    delay: float | None = None,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr unless progress is silenced.

    The bar appears only after ``delay`` seconds (default :data:`DELAY`), so a quick loop
    prints nothing.

    Examples
    --------
    >>> list(progress(range(3), desc="counting"))
    [0, 1, 2]
    """
    if _QUIET:
        yield from iterable
        return
    yield from _tqdm_class()(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        delay=DELAY if delay is None else delay,
        file=sys.stderr,
    )


def _tqdm_class() -> type:
    """tqdm's notebook bar where it can draw (ipywidgets installed), else the text bar.

    ``tqdm.auto`` in a Jupyter kernel without ipywidgets falls back to the text bar but
    warns (``TqdmWarning: IProgress not found``) on every loop; ipywidgets is not a
    dependency, so a notebook must run without it and without the warning.
    """
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


@contextlib.contextmanager
def step(desc: str) -> Iterator[None]:
    """Say on stderr that ``desc`` started, and how long it took once it is done.

    For one long call without a loop to count (a model load, a checksum of large
    weights). Silent when progress is silenced.

    Examples
    --------
    >>> with step("loading the model"):  # prints "loading the model ..." on stderr
    ...     pass
    """
    if _QUIET:
        yield
        return
    print(f"{desc} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    print(f"{desc}: done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
