"""``conceptlens demo``: the end-to-end demo on the embedded default (see :func:`run_demo`)."""

from __future__ import annotations

import time

import click

from conceptlens._cli_options import UserPath, cache_dir_option
from conceptlens._demo import MIN_N, format_summary, run_demo
from conceptlens._progress import is_quiet

__all__ = ["demo"]


@click.command(name="demo")
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=MIN_N),
    default=3000,
    show_default=True,
    help=f"SynthDerm images to generate (at least {MIN_N}).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--preset",
    default="confounded",
    show_default=True,
    help="SynthDerm preset with a held-out site (confounded, protocol-shift, ...) or the "
    "path of a YAML configuration (SynthDermConfig.to_yaml): plant your own shortcut.",
)
@click.option("--out", "out_dir", default="reports/demo", show_default=True,
              type=UserPath(file_okay=False), help="Output folder.")  # fmt: skip
@cache_dir_option
@click.option(
    "--max-concepts-per-class", type=click.IntRange(min=1), default=10, show_default=True
)
@click.option(
    "--n-boot",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap replicates.",
)
def demo(
    n: int,
    seed: int,
    preset: str,
    out_dir: str,
    cache_dir: str | None,
    max_concepts_per_class: int,
    n_boot: int,
) -> None:
    """Run the end-to-end demo on SynthDerm with synthderm-lit (offline)."""
    quiet = is_quiet()
    t0 = time.perf_counter()
    result = run_demo(
        n=n,
        seed=seed,
        preset=preset,
        out_dir=out_dir,
        cache_dir=cache_dir,
        max_concepts_per_class=max_concepts_per_class,
        n_boot=n_boot,
        echo=None if quiet else (lambda msg: click.echo(msg, err=True)),
    )
    click.echo(format_summary(result))
    if result.study is not None:
        click.echo("\nfinding: " + result.study["finding"])
    if not quiet:
        click.echo(f"\noutputs in {out_dir}/ ({time.perf_counter() - t0:.1f} s)", err=True)
