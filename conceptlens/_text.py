"""Small text checks shared by the layers (prompt templates)."""

from __future__ import annotations

__all__ = ["fills_once"]


def fills_once(template: object) -> bool:
    """Whether ``template.format(prompt)`` works and puts the prompt in exactly once.

    ``"{}"`` must be the only replacement field: ``"{} {x}"`` (a ``KeyError``), ``"{1}"``
    (``IndexError``), ``"{} {0}"`` (``ValueError``) or ``"{}{}"`` would pass a plain
    ``"{}" in template`` check and fail only when the first prompt is encoded.

    Examples
    --------
    >>> fills_once("a dermoscopy image of {}"), fills_once("{} with {x}"), fills_once("{{}}")
    (True, False, False)
    """
    if not isinstance(template, str):
        return False
    marker = "\x00prompt\x00"
    try:
        filled = template.format(marker)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return False
    return filled.count(marker) == 1 and "{}" in template
