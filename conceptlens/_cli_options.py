"""Click options shared by every ``conceptlens`` command: one name, one meaning, one help.

A command that takes a cache folder, a label column, an output path, a manifest's path
column or root, or an error policy uses the decorator from here, so the same thing has
the same spelling everywhere (``--cache-dir``, ``--label-column``, ``--out``,
``--path-column``, ``--root``, ``--on-error``). Paths go through :class:`UserPath`, which
expands a leading ``~`` the way :func:`conceptlens._io.user_path` does in the API.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = [
    "CACHE_DIR_HELP",
    "FiniteFloat",
    "UserPath",
    "allow_mismatch_option",
    "cache_dir_option",
    "debug_option",
    "download_option",
    "echo_info",
    "label_column_option",
    "model_option",
    "on_error_option",
    "out_option",
    "printable",
    "path_column_option",
    "quiet_option",
    "read_scores",
    "root_option",
    "scores_option",
    "weights_option",
]

F = TypeVar("F", bound=Callable[..., Any])

CACHE_DIR_HELP = (
    "conceptlens cache folder (embeddings, LLM responses); default $CONCEPTLENS_CACHE_DIR, "
    "else $XDG_CACHE_HOME/conceptlens, else ~/.cache/conceptlens."
)


def printable(text: str) -> str:
    r"""``text`` with control and format characters written as escapes (``\x1b``).

    Messages quote ids, labels and paths from files the user may not control; printed
    raw, an escape sequence in a manifest id could retitle or clear the terminal, and a
    bidirectional override could reorder the line. Newlines and tabs are kept.

    Examples
    --------
    >>> print(printable("id\x1b]0;owned\x07 ok\u202e"))
    id\x1b]0;owned\x07 ok\u202e
    """
    import unicodedata

    return "".join(
        ch
        if ch in "\n\t" or unicodedata.category(ch)[0] != "C"
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


class FiniteFloat(click.FloatRange):
    """:class:`click.FloatRange` that also refuses ``nan`` and ``inf`` (a usage error).

    ``nan`` passes every range check (all its comparisons are false), so ``--cutoff nan``
    or ``--max-aspect-ratio nan`` would silently switch a check off.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class UserPath(click.Path):
    """:class:`click.Path` that expands a leading ``~`` before its checks.

    The shell expands ``~`` only at the start of a word, so ``--out=~/x`` or a quoted
    ``"~/x"`` would otherwise create a folder literally named ``~``.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike) and not isinstance(value, bytes):
            value = os.path.expanduser(os.fspath(value))
        return super().convert(value, param, ctx)


def cache_dir_option(f: F) -> F:
    """``--cache-dir DIR``: the conceptlens cache folder (default: :func:`cache_root`)."""
    return click.option(
        "--cache-dir",
        type=UserPath(file_okay=False),
        default=None,
        help=CACHE_DIR_HELP,
    )(f)


def weights_option(f: F) -> F:
    """``--weights FILE``: synthderm-lit weights the user trained instead of the shipped ones."""
    return click.option(
        "--weights",
        type=UserPath(exists=True, dir_okay=False),
        default=None,
        help="synthderm-lit only: weights you trained (train-synthderm-lit) instead of the "
        "shipped.",
    )(f)


def download_option(f: F) -> F:
    """``--download``: let a hub backbone download missing weights (no network otherwise)."""
    return click.option(
        "--download",
        is_flag=True,
        help="Let huggingface_hub download missing hub weights (otherwise no network is used).",
    )(f)


def model_option(f: F) -> F:
    """``--model DIR``: a model folder written by ``conceptlens fit`` (or ``save_head``)."""
    return click.option(
        "--model",
        "model_dir",
        required=True,
        type=UserPath(file_okay=False),
        help="Model folder written by `conceptlens fit` (or save_head).",
    )(f)


def scores_option(help: str) -> Callable[[F], F]:
    """``--scores FILE``: a concept_score file (netCDF or zarr), read with :func:`read_scores`."""

    def deco(f: F) -> F:
        return click.option("--scores", "scores_path", required=True, type=UserPath(), help=help)(
            f
        )

    return deco


def allow_mismatch_option(f: F) -> F:
    """``--allow-score-mismatch``: apply a head to scores of another mode, bank or backbone."""
    return click.option(
        "--allow-score-mismatch",
        is_flag=True,
        help="Apply the head even if the scores' mode, bank or backbone fingerprint differ "
        "from its training scores'.",
    )(f)


def label_column_option(f: F) -> F:
    """``--label-column NAME``: the column (or sample coordinate) holding the labels."""
    return click.option(
        "--label-column",
        default="label",
        show_default=True,
        help="Column (manifest) or sample coordinate (scores) holding the labels.",
    )(f)


def path_column_option(f: F) -> F:
    """``--path-column NAME``: the manifest column holding image paths."""
    return click.option(
        "--path-column",
        default="path",
        show_default=True,
        help="Manifest column holding the image paths.",
    )(f)


def root_option(f: F) -> F:
    """``--root DIR``: the folder that relative manifest paths start from."""
    return click.option(
        "--root",
        type=UserPath(file_okay=False),
        default=None,
        help="Folder that relative manifest paths start from (default: the manifest's folder).",
    )(f)


def on_error_option(f: F) -> F:
    """``--on-error raise|skip``: what a bad image or manifest row does."""
    return click.option(
        "--on-error",
        type=click.Choice(["raise", "skip"]),
        default="raise",
        show_default=True,
        help="Bad image or manifest row: stop with an error, or skip it and say so.",
    )(f)


def out_option(
    help: str, *, file_okay: bool = True, dir_okay: bool = True, required: bool = True
) -> Callable[[F], F]:
    """``--out PATH``: where a command writes its result."""

    def deco(f: F) -> F:
        return click.option(
            "--out",
            "out",
            type=UserPath(file_okay=file_okay, dir_okay=dir_okay),
            required=required,
            help=help,
        )(f)

    return deco


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        from conceptlens._progress import set_quiet

        set_quiet(True)


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().meta["conceptlens.debug"] = True


# accepted before and after the subcommand (`conceptlens -q data info X` and
# `conceptlens data info X -q`); the main group and every subcommand get the same objects
quiet_option = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_quiet,
    help="No progress bars or informational output.",
)
debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show full tracebacks on errors.",
)


def read_scores(path: str | os.PathLike[str], *, option: str = "--scores") -> Any:
    """Read the ``concept_score`` array of a netCDF (``.nc``) or zarr file, checked.

    Every failure is a :class:`~conceptlens.exceptions.DataError` or
    :class:`~conceptlens.exceptions.MissingFileError` naming the file and what to give
    instead, never a storage backend's message.
    """
    import xarray as xr

    from conceptlens._io import user_path
    from conceptlens.exceptions import DataError, MissingFileError

    p = user_path(path)
    hint = "write one with `conceptlens score --out scores.nc`"
    if not p.exists():
        raise MissingFileError(f"{option} {p}: no such file; {hint}")
    is_zarr = p.suffix.lower() == ".zarr" or (p / ".zgroup").exists() or (p / "zarr.json").exists()
    if p.is_dir() and not is_zarr:
        raise DataError(f"{option} {p} is a folder, not a concept-score file; {hint}")
    if not is_zarr:
        with open(p, "rb") as fh:
            magic = fh.read(8)
        if not (magic.startswith(b"CDF") or magic.startswith(b"\x89HDF")):
            raise DataError(
                f"{option} {p} is not a netCDF file of concept scores (a manifest or bank?); "
                f"{hint}"
            )
    try:
        ds = xr.open_zarr(p) if is_zarr else xr.open_dataset(p)
        ds = ds.load()
    except Exception as exc:  # backends raise many types; say which file and why
        raise DataError(f"{option} {p} could not be read as concept scores ({exc})") from exc
    if "concept_score" not in ds:
        raise DataError(
            f"{option} {p} has no `concept_score` variable (has {sorted(map(str, ds.data_vars))})"
            f"; {hint}"
        )
    scores = ds["concept_score"]
    if set(scores.dims) != {"sample", "concept"}:
        raise DataError(
            f"{option} {p}: concept_score has dims {tuple(scores.dims)}; expected "
            "('sample', 'concept')"
        )
    for dim in ("sample", "concept"):
        values = [str(v) for v in scores[dim].values] if dim in scores.coords else None
        if scores.sizes[dim] == 0:
            raise DataError(f"{option} {p} has no {dim}s; {hint}")
        if values is not None and len(set(values)) != len(values):
            dup = sorted({v for v in values if values.count(v) > 1})
            raise DataError(
                f"{option} {p}: {dim} ids are not unique ({len(dup)} repeated, e.g. "
                f"{dup[:3]}); rows could not be told apart. Drop or rename the repeats "
                f"(scores.drop_duplicates({dim!r}))."
            )
    return scores.transpose("sample", "concept")


def echo_info(message: str) -> None:
    """Print an informational line (what a command wrote) unless ``--quiet`` is on.

    Every command's "wrote ..." / "saved ..." line goes through here, so ``--quiet`` (or
    ``CONCEPTLENS_QUIET=1``) silences them all alike; results a command exists to show
    (tables, summaries) are printed whatever ``--quiet`` says.
    """
    from conceptlens._progress import is_quiet

    if not is_quiet():
        click.echo(message)


def warn_in_sample(model: Any, scores: Any, *, where: str, name: str = "the head") -> int:
    """Print a warning when some of ``scores`` were used to fit ``model``; their count.

    A head saved by ``conceptlens fit`` (or ``save_head(..., fit_samples=...)``) records
    its training samples (as hashes); predictions, explanations and metrics on them are
    in-sample, so optimistic.
    """
    from conceptlens.heads import used_in_fit

    seen = used_in_fit(model, scores)
    if seen is None:
        return 0
    n = int(seen.sum())
    if n:
        click.echo(
            f"warning: {n} of {len(seen)} samples in {where} were used to fit {name} (or to "
            "select its C): their predictions are in-sample and metrics on them optimistic; "
            "evaluate on samples the head never saw.",
            err=True,
        )
    return n


def read_head_and_scores(
    model_dir: Any, scores_path: Any, allow_mismatch: bool, *, warn: bool = True
) -> tuple[Any, Any]:
    """The scores at ``scores_path`` and the head in ``model_dir``, checked together.

    The head's provenance (score mode, bank, backbone) is checked against the scores
    (``--allow-score-mismatch`` overrides), and, with ``warn``, samples the head was
    fitted on are announced (:func:`warn_in_sample`). Returns ``(model, scores)``.
    """
    from conceptlens.heads import load_head

    scores = read_scores(scores_path)
    model = load_head(model_dir, scores=scores, allow_mismatch=allow_mismatch)
    if warn:
        warn_in_sample(model, scores, where=str(scores_path))
    return model, scores
