"""``conceptlens score``: score a concept bank on a dataset into netCDF or zarr."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["score"]


@click.command(name="score")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Manifest CSV/Parquet (a 'path' column, paths relative to the manifest).",
)
@click.option("--bank", required=True, help="Concept bank name or file.")
@click.option(
    "--backbone",
    default="synthderm-lit",
    show_default=True,
    help="Backbone name, checkpoint file, local-dir:PATH or hf-hub:ID.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=True),
    help="Output: .nc (netCDF) or .zarr.",
)
@click.option(
    "--mode",
    type=click.Choice(["cosine", "relative"]),
    default="cosine",
    show_default=True,
    help="relative = cosine minus the cosine with the bank's reference prompts.",
)
@click.option("--cache", type=click.Path(file_okay=False), default=None, help="Embedding cache.")
@click.option("--batch-size", type=int, default=None, help="Images per forward pass.")
@click.option("--label-column", default="label", show_default=True)
@click.option(
    "--accept-label",
    "accept_labels",
    multiple=True,
    help="Keep this label although it is rare (< 2 rows) or not among the bank's classes.",
)
@click.option("--device", default=None, help="torch device (default: cuda > mps > cpu).")
@click.option("--scheduler", default=None, help="dask.distributed scheduler address.")
def score(
    data: str,
    bank: str,
    backbone: str,
    out: str,
    mode: str,
    cache: str | None,
    batch_size: int | None,
    label_column: str,
    accept_labels: tuple[str, ...],
    device: str | None,
    scheduler: str | None,
) -> None:
    """Score a concept bank on the images of a manifest; write a concept_score array."""
    from conceptlens.backbones import load_backbone
    from conceptlens.concepts import load_bank, score_concepts
    from conceptlens.data import load_manifest
    from conceptlens.exceptions import ConfigError

    out_path = Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in (".nc", ".zarr"):
        raise ConfigError(f"--out {out}: use a .nc (netCDF) or .zarr suffix")
    dataset = load_manifest(data, label_column=label_column)
    bank_obj = load_bank(bank)
    _check_label_typos(dataset, bank_obj, data, label_column, accept_labels)
    bb = load_backbone(backbone, device=device, batch_size=batch_size)
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
    scores.attrs["bank_classes"] = json.dumps(list(bank_obj.classes))  # read by `fit`
    write_scores(scores, out_path)
    click.echo(
        f"wrote {out_path}: {scores.sizes['sample']} samples x {scores.sizes['concept']} "
        f"concepts ({mode}, backbone {bb.name}, bank {bank_obj.id} {bank_obj.version})"
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


def write_scores(scores, out_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Write a concept_score DataArray atomically (.nc: netCDF4; .zarr: zarr)."""
    from conceptlens._io import atomic_dir, atomic_path

    if out_path.suffix.lower() == ".nc":
        with atomic_path(out_path) as tmp:
            scores.to_netcdf(tmp)
        return
    with atomic_dir(out_path) as tmp:
        # zarr format 2: string coords have a stable spec there (readable by every zarr)
        scores.to_dataset().to_zarr(tmp, mode="w", zarr_format=2)
