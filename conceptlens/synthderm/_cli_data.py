"""``conceptlens data synthderm``: write a SynthDerm dataset to disk."""

from __future__ import annotations

from pathlib import Path

import click

from conceptlens._cli_options import UserPath, echo_info
from conceptlens.synthderm._presets import list_synthderm_presets

__all__ = ["synthderm"]


@click.command(name="synthderm")
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Number of images.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed (same seed, same bytes).",
)
@click.option(
    "--preset",
    default="iid",
    show_default=True,
    help=f"Preset name ({', '.join(list_synthderm_presets())}) or the path of a YAML "
    "configuration (SynthDermConfig.to_yaml).",
)
@click.option(
    "--out",
    "out",
    type=UserPath(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (images/, masks/, manifest.csv).",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=32, max=1024),
    default=96,
    show_default=True,
    help="Image side in pixels.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Rewrite files even if the folder holds data with other settings.",
)
def synthderm(n: int, seed: int, preset: str, out: Path, image_size: int, overwrite: bool) -> None:
    """Generate SynthDerm images, masks and a manifest CSV in OUT.

    Rerunning the same command over a partial output completes it.
    """
    from conceptlens.synthderm._generator import write_synthderm

    manifest = write_synthderm(
        out, n, seed=seed, preset=preset, image_size=image_size, overwrite=overwrite
    )
    echo_info(f"wrote {n} SynthDerm images ({preset}, seed {seed}) -> {manifest}")
