"""Catch label typos before they become classes (shared by ``score`` and ``fit``)."""

from __future__ import annotations

import difflib
import shlex
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from conceptlens.exceptions import DataError

__all__ = ["check_labels", "same_spelling"]


def _closest(label: str, candidates: Iterable[str]) -> str | None:
    pool = [c for c in dict.fromkeys(candidates) if c != label]
    hit = difflib.get_close_matches(label, pool, n=1, cutoff=0.0)
    return hit[0] if hit else None


def _missing(value: object) -> bool:
    """None, NaN, pandas' NA or NaT, or blank text."""
    if value is None or not str(value).strip():
        return True
    try:
        return bool(value != value)  # NaN; pandas.NA raises here
    except TypeError:
        return True


def same_spelling(label: str) -> str:
    """``label`` folded for comparison: Unicode NFKC, case and runs of whitespace.

    Examples
    --------
    >>> same_spelling(" Melanoma ") == same_spelling("melanoma")
    True
    """
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())


def _spelling_twins(names: Iterable[str], declared: Sequence[str]) -> tuple[str, str] | None:
    """Two distinct labels (or a label and a declared class) that fold to the same text."""
    seen: dict[str, str] = {}
    for name in [*declared, *names]:
        key = same_spelling(name)
        if key in seen and seen[key] != name:
            return seen[key], name
        seen.setdefault(key, name)
    return None


def check_labels(
    labels: Sequence[object],
    *,
    known: Sequence[str] | None = None,
    counted: Sequence[object] | None = None,
    accept: Iterable[str] = (),
    min_count: int = 2,
    where: str = "the labels",
    rows: str = "training rows",
    option: str = "--accept-label",
) -> None:
    """Raise :class:`DataError` for a label that looks like a typo.

    A label is suspect when it differs from another label or a declared class only in
    case, spacing or Unicode form (``"Melanoma"``, ``"melanoma "``), when it is seen in
    fewer than ``min_count`` of the ``counted`` rows (default: ``labels`` itself), or when
    ``known`` (the bank's declared classes) is given and does not contain it.  The message names the label, its closest known
    class (:mod:`difflib`) and the option that accepts it; labels in ``accept`` pass.

    Parameters
    ----------
    labels : sequence
        Every label that will be used (all rows).
    known : sequence of str, optional
        Declared classes; ``None`` or empty skips that check.
    counted : sequence, optional
        The labels of the rows that must hold each class ``min_count`` times (the
        training rows); default ``labels``.
    accept : iterable of str
        Labels the user accepted explicitly.
    min_count : int, default=2
    where, rows, option : str
        Wording of the message: the source, what the counted rows are, the option name
        (``""``: no option to suggest).

    Examples
    --------
    >>> check_labels(["nevus", "nevus", "melanoma", "melanoma", "melanomma"])
    Traceback (most recent call last):
    ...
    conceptlens.exceptions.DataError: label 'melanomma' in the labels is seen in 1 training row(s) (at least 2 are needed to be a class); did you mean 'melanoma'? Fix the label, or pass --accept-label melanomma to keep it as a class.
    """  # noqa: E501
    accepted = {str(a) for a in accept}
    unlabelled = [i for i, v in enumerate(labels) if _missing(v)]
    if unlabelled:
        raise DataError(
            f"{len(unlabelled)} row(s) in {where} have no label (empty or NaN; the first at "
            f"position {unlabelled[0]}); fill the labels in or leave those samples out."
        )
    names = [str(v) for v in labels]
    counts = Counter(str(v) for v in (labels if counted is None else counted))
    declared = [str(c) for c in known] if known else []
    twins = _spelling_twins([n for n in dict.fromkeys(names) if n not in accepted], declared)
    if twins is not None:
        first, second = twins
        keep = (
            f" (or pass {option} {shlex.quote(second)} to keep {second!r} as a class of its own)"
            if option
            else ""
        )
        raise DataError(
            f"labels {first!r} and {second!r} in {where} differ only in case, spacing or "
            f"Unicode form, so they would become two classes; use one spelling{keep}."
        )
    for label in dict.fromkeys(names):
        if label in accepted:
            continue
        if declared and label not in declared:
            near = _closest(label, declared)
            hint = f"; did you mean {near!r}?" if near else "."
            raise DataError(
                f"label {label!r} in {where} is not one of the bank's classes {declared}{hint} "
                f"Fix the label, or pass {option} {shlex.quote(label)} to keep it as a class."
            )
        if counts[label] < min_count:
            common = [c for c, n in counts.most_common() if n >= min_count]
            near = _closest(label, declared or common)
            hint = f"; did you mean {near!r}?" if near else "."
            raise DataError(
                f"label {label!r} in {where} is seen in {counts[label]} {rows[:-1]}(s) (at "
                f"least {min_count} are needed to be a class){hint} Fix the label, or pass "
                f"{option} {shlex.quote(label)} to keep it as a class."
            )
