"""Click commands for training and evaluating synthderm-lit.

Added to the ``conceptlens backbone`` group as ``train-synthderm-lit`` (stage 1),
``refit-synthderm-lit`` (stage 2) and ``evaluate-synthderm-lit``. Heavy imports happen
inside the command functions.
"""

from __future__ import annotations

import click

__all__ = ["evaluate_synthderm_lit", "refit_synthderm_lit", "train_synthderm_lit"]


@click.command("train-synthderm-lit")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="synthderm-lit-run",
    show_default=True,
    help="Folder receiving synthderm-lit.safetensors and synthderm-lit.json.",
)
@click.option("--data-seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=None, help="Default 1024 on CUDA, 128 on CPU.")
@click.option(
    "--time-budget", type=float, default=None, help="Seconds of training (330 CUDA / 2700 CPU)."
)
@click.option("--max-steps", type=int, default=None)
@click.option("--lr", type=float, default=None, help="Default 2e-3 on CUDA, 1e-3 on CPU.")
@click.option("--concept-weight", type=float, default=1.0, show_default=True)
@click.option("--num-workers", type=int, default=None, help="Generator processes.")
@click.option("--device", default=None, help="torch device; default cuda if available.")
@click.option("--minilm-path", type=click.Path(file_okay=False), default=None)
@click.option("--no-augment", is_flag=True)
@click.option("--val-size", type=int, default=None, help="Validation images in the record.")
@click.option("--log-every", type=int, default=20, show_default=True, help="Steps per loss entry.")
def train_synthderm_lit(
    out: str,
    data_seed: int,
    batch_size: int | None,
    time_budget: float | None,
    max_steps: int | None,
    lr: float | None,
    concept_weight: float,
    num_workers: int | None,
    device: str | None,
    minilm_path: str | None,
    no_augment: bool,
    val_size: int | None,
    log_every: int,
) -> None:
    """Train the synthderm-lit image tower LiT-style on generated SynthDerm captions."""
    from conceptlens.synthderm._train_lit import main

    argv = ["--out", out, "--data-seed", str(data_seed), "--concept-weight", str(concept_weight)]
    argv += ["--log-every", str(log_every)]
    for flag, value in (
        ("--batch-size", batch_size),
        ("--time-budget", time_budget),
        ("--max-steps", max_steps),
        ("--lr", lr),
        ("--num-workers", num_workers),
        ("--device", device),
        ("--minilm-path", minilm_path),
        ("--val-size", val_size),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if no_augment:
        argv.append("--no-augment")
    record = main(argv)
    click.echo(
        f"trained {record['steps']} steps ({record['images_seen']} images); validation mean "
        f"zero-shot AUROC {record['validation_zero_shot_auroc']['mean']:.3f}; wrote {out}"
    )


@click.command("refit-synthderm-lit")
@click.option(
    "--init",
    "init_weights",
    type=click.Path(dir_okay=False, exists=True),
    required=True,
    help="Stage-1 weights (synthderm-lit.safetensors) whose image projection is refitted.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="synthderm-lit-refit",
    show_default=True,
    help="Folder receiving the refitted synthderm-lit.safetensors and synthderm-lit.json.",
)
@click.option("--data-seed", type=int, default=1, show_default=True)
@click.option("--chunks", type=int, default=48, show_default=True, help="Chunks of new images.")
@click.option("--chunk-size", type=int, default=256, show_default=True)
@click.option("--steps", type=int, default=3000, show_default=True)
def refit_synthderm_lit(
    init_weights: str, out: str, data_seed: int, chunks: int, chunk_size: int, steps: int
) -> None:
    """Stage 2: lock the text side (projection = identity) and refit the image projection."""
    from conceptlens._progress import is_quiet
    from conceptlens.synthderm._train_lit import refit_projection

    record = refit_projection(
        out,
        init_weights,
        data_seed=data_seed,
        n_chunks=chunks,
        chunk_size=chunk_size,
        steps=steps,
        quiet=is_quiet(),
    )
    images = record["stage2"]["data"]["images"]
    click.echo(f"refitted the image projection on {images} images; wrote {out}")


@click.command("evaluate-synthderm-lit")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Default: shipped.")
@click.option("--n", type=int, default=4000, show_default=True, help="Evaluation images.")
@click.option("--n-probe-train", type=int, default=4000, show_default=True)
@click.option("--seed", type=int, default=None, help="Evaluation seed (default 20261127).")
@click.option("--preset", default="iid", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@click.option(
    "--write-docs",
    type=click.Path(dir_okay=False),
    default=None,
    help="Update the measured-numbers block of this markdown file (docs/synthderm.md).",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False),
    default=None,
    help="Training record JSON to store the results in (key 'evaluation').",
)
def evaluate_synthderm_lit(
    weights: str | None,
    n: int,
    n_probe_train: int,
    seed: int | None,
    preset: str,
    json_path: str | None,
    write_docs: str | None,
    record: str | None,
) -> None:
    """Print every synthderm-lit quality figure measured on fresh SynthDerm images."""
    from conceptlens.synthderm._evaluate_lit import main

    argv = ["--n", str(n), "--n-probe-train", str(n_probe_train), "--preset", preset]
    for flag, value in (
        ("--weights", weights),
        ("--seed", seed),
        ("--json", json_path),
        ("--write-docs", write_docs),
        ("--record", record),
    ):
        if value is not None:
            argv += [flag, str(value)]
    main(argv)
