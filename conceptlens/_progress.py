"""Progress reporting that the CLI's ``--quiet`` flag (or ``CONCEPTLENS_QUIET=1``) silences."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["is_quiet", "progress", "set_quiet"]

_QUIET = os.environ.get("CONCEPTLENS_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool) -> None:
    """Turn progress bars off (``True``) or on (``False``) for this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress output is silenced (``--quiet`` or ``CONCEPTLENS_QUIET=1``)."""
    return _QUIET


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str | None = None
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr unless progress is silenced."""
    if _QUIET:
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
