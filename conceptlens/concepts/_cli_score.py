"""``conceptlens score``: score a concept bank on a dataset into netCDF or zarr."""

from __future__ import annotations

from pathlib import Path

import click

from conceptlens._cli_options import (
    FiniteFloat,
    UserPath,
    cache_dir_option,
    download_option,
    echo_info,
    label_column_option,
    on_error_option,
    out_option,
    path_column_option,
    printable,
    root_option,
    weights_option,
)

__all__ = ["score"]


@click.command(name="score")
@click.option(
    "--data",
    "data",
    required=True,
    type=UserPath(exists=True),
    help="Manifest CSV/Parquet with a column of image paths (relative to --root), or a "
    "folder holding manifest.csv (as `conceptlens data synthderm` writes).",
)
@root_option
@path_column_option
@label_column_option
@on_error_option
@click.option("--bank", required=True, help="Concept bank name or file.")
@click.option(
    "--backbone",
    default="synthderm-lit",
    show_default=True,
    help="Backbone name, checkpoint file, local-dir:PATH or hf-hub:ID.",
)
@out_option("Output: .nc (netCDF) or .zarr.")
@click.option(
    "--mode",
    type=click.Choice(["cosine", "relative", "presence"]),
    default="cosine",
    show_default=True,
    help="relative = cosine minus the cosine with the bank's reference prompts; presence = "
    "two-way softmax of each concept against the reference prompt (MONET-style).",
)
@cache_dir_option
@click.option(
    "--no-cache",
    is_flag=True,
    help="Encode every image afresh and keep no embeddings (default: reuse and extend the "
    "embedding cache, so a rerun or a resumed run encodes nothing twice).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per pass.")
@click.option(
    "--accept-label",
    "accept_labels",
    multiple=True,
    help="Keep this label although it is rare (< 2 rows) or not among the bank's classes.",
)
@click.option("--device", default=None, help="torch device (default: cuda > mps > cpu).")
@click.option(
    "--scheduler",
    default=None,
    help="dask.distributed scheduler address; the workers use an embedding cache only if "
    "--cache-dir names one (on a file system they all share).",
)
@weights_option
@download_option
@click.option(
    "--max-aspect-ratio",
    type=FiniteFloat(min=1),
    default=10.0,
    show_default=True,
    help="Refuse images whose long side exceeds this multiple of the short side.",
)
def score(
    data: str | Path,
    root: str | None,
    path_column: str,
    label_column: str,
    on_error: str,
    bank: str,
    backbone: str,
    out: str,
    mode: str,
    cache_dir: str | None,
    no_cache: bool,
    batch_size: int | None,
    accept_labels: tuple[str, ...],
    device: str | None,
    scheduler: str | None,
    weights: str | None,
    download: bool,
    max_aspect_ratio: float,
) -> None:
    """Score a concept bank on the images of a manifest; write a concept_score array."""
    from conceptlens._io import cache_root
    from conceptlens._progress import step
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts import load_bank, score_concepts, write_scores
    from conceptlens.data import load_manifest
    from conceptlens.data._cli import manifest_file

    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in (".nc", ".zarr"):
        raise click.BadParameter(f"{out}: use a .nc (netCDF) or .zarr suffix", param_hint="--out")
    if no_cache and cache_dir is not None:
        raise click.UsageError("give --cache-dir or --no-cache, not both")
    if no_cache or (scheduler and cache_dir is None):
        # on a cluster the workers write the cache: only a folder the user names (on a
        # file system every worker shares) is safe, not this machine's default
        cache = None
    else:
        cache = Path(cache_dir) if cache_dir is not None else cache_root()
    data = manifest_file(data)
    dataset = load_manifest(
        data,
        root=root,
        path_column=path_column,
        label_column=label_column,
        on_error=on_error,  # type: ignore[arg-type]
        max_aspect_ratio=max_aspect_ratio,
        # skip: decode every image now, so unreadable ones are left out before scoring
        validate=on_error == "skip",
    )
    bank_obj = load_bank(bank)
    _check_label_typos(dataset, bank_obj, data, label_column, accept_labels)
    with step(f"loading backbone {backbone}"):
        bb = load_backbone(
            backbone, device=device, batch_size=batch_size, weights=weights, download=download
        )
    client = None
    if scheduler:
        from dask.distributed import Client

        client = Client(scheduler)
    try:
        scores = score_concepts(
            bb, dataset, bank_obj, mode=mode, cache=cache, batch_size=batch_size, client=client
        )
        scores = scores.compute() if client is not None else scores
    finally:
        if client is not None:
            client.close()
    write_scores(scores, out_path)
    for skipped in getattr(dataset, "skipped", []):
        click.echo(printable(f"skipped {skipped}"), err=True)
    echo_info(
        f"wrote {out_path}: {scores.sizes['sample']} samples x {scores.sizes['concept']} "
        f"concepts ({mode}, backbone {bb.name}, bank {bank_obj.id} {bank_obj.version}"
        + (f"; embedding cache {cache})" if cache is not None else ")")
    )


def _check_label_typos(dataset, bank, data, label_column, accept) -> None:  # type: ignore[no-untyped-def]
    """Stop before encoding when a label looks like a typo (rare, or not a bank class)."""
    import numpy as np

    from conceptlens._label_check import check_labels

    codes = dataset.labels
    if codes is None or codes.ndim != 1 or not dataset.classes:
        return
    names = np.asarray(dataset.classes, dtype=object)[codes[codes >= 0]]
    check_labels(
        names,
        known=list(bank.classes),
        accept=accept,
        where=f"column {label_column!r} of {data}",
        rows="rows",
    )
