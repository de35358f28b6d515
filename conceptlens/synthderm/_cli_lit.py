"""Click commands for training and evaluating synthderm-lit.

Added to the ``conceptlens backbone`` group as ``train-synthderm-lit`` (stage 1),
``refit-synthderm-lit`` (stage 2) and ``evaluate-synthderm-lit``. Each command calls the
library function directly (:func:`~conceptlens.synthderm._train_lit.train_lit`,
:func:`~conceptlens.synthderm._train_lit.refit_projection`,
:func:`~conceptlens.synthderm._evaluate_lit.evaluate_lit`); the device-dependent defaults
are defined once, in :data:`STAGE1_DEFAULTS`. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import os
from typing import Any

import click

from conceptlens._cli_options import UserPath, echo_info

__all__ = [
    "STAGE1_DEFAULTS",
    "evaluate_synthderm_lit",
    "refit_synthderm_lit",
    "stage1_defaults",
    "train_synthderm_lit",
]

#: option -> (CUDA default, CPU default) for stage 1; the help texts are built from it.
STAGE1_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "batch_size": (1024, 128),
    "time_budget": (330.0, 2700.0),
    "lr": (2e-3, 1e-3),
    "num_workers": ("min(14, cpus - 2)", 0),
    "checkpoint_every": (60.0, 300.0),
    "val_size": (2000, 1000),
    "text_cache": (0, 200_000),
}


def stage1_defaults(cuda: bool) -> dict[str, Any]:
    """Stage-1 settings for a CUDA or a CPU run (see :data:`STAGE1_DEFAULTS`)."""
    out = {k: v[0] if cuda else v[1] for k, v in STAGE1_DEFAULTS.items()}
    if cuda:
        out["num_workers"] = max(0, min(14, (os.cpu_count() or 2) - 2))
    return out


def _help(name: str, text: str) -> str:
    gpu, cpu = STAGE1_DEFAULTS[name]
    return f"{text} Default {gpu} on CUDA, {cpu} on CPU."


@click.command("train-synthderm-lit")
@click.option(
    "--out",
    type=UserPath(file_okay=False),
    default="synthderm-lit-run",
    show_default=True,
    help="Folder receiving synthderm-lit.safetensors and synthderm-lit.json (not inside "
    "the installed package).",
)
@click.option("--data-seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=None, help=_help("batch_size", "Images per step."))
@click.option(
    "--time-budget", type=float, default=None, help=_help("time_budget", "Seconds of training.")
)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps.")
@click.option("--lr", type=float, default=None, help=_help("lr", "Peak learning rate."))
@click.option("--weight-decay", type=float, default=0.05, show_default=True)
@click.option("--warmup-steps", type=int, default=200, show_default=True)
@click.option("--concept-weight", type=float, default=1.0, show_default=True)
@click.option(
    "--num-workers", type=int, default=None, help=_help("num_workers", "Generator processes.")
)
@click.option("--device", default=None, help="torch device; default cuda if available.")
@click.option("--minilm-path", type=UserPath(file_okay=False), default=None)
@click.option("--minilm-note", default=None, help="Note on the MiniLM copy, for the record.")
@click.option("--no-augment", is_flag=True, help="No random flips / rot90.")
@click.option(
    "--checkpoint-every",
    type=float,
    default=None,
    help=_help("checkpoint_every", "Seconds between checkpoints."),
)
@click.option("--log-every", type=int, default=20, show_default=True, help="Steps per loss entry.")
@click.option("--val-size", type=int, default=None, help=_help("val_size", "Validation images."))
@click.option(
    "--text-cache", type=int, default=None, help=_help("text_cache", "Cached caption embeddings.")
)
@click.option("--torch-seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads.")
@click.option("--train-text-proj", is_flag=True, help="Also train the text projection.")
def train_synthderm_lit(**options: Any) -> None:
    """Train the synthderm-lit image tower LiT-style on generated SynthDerm captions."""
    import torch

    from conceptlens._progress import is_quiet
    from conceptlens.synthderm._train_lit import train_lit

    device = options["device"]
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    settings = {**stage1_defaults(cuda)}
    settings.update({k: v for k, v in options.items() if v is not None})
    settings["augment"] = not settings.pop("no_augment")
    out = settings.pop("out")
    record = train_lit(out, quiet=is_quiet(), **settings)
    click.echo(
        f"trained {record['steps']} steps ({record['images_seen']} images); validation mean "
        f"zero-shot AUROC {record['validation_zero_shot_auroc']['mean']:.3f}"
    )
    echo_info(f"wrote {out}")


@click.command("refit-synthderm-lit")
@click.option(
    "--init",
    "init_weights",
    type=UserPath(dir_okay=False, exists=True),
    required=True,
    help="Stage-1 weights (synthderm-lit.safetensors) whose image projection is refitted.",
)
@click.option(
    "--out",
    type=UserPath(file_okay=False),
    default="synthderm-lit-refit",
    show_default=True,
    help="Folder receiving the refitted synthderm-lit.safetensors and synthderm-lit.json.",
)
@click.option("--data-seed", type=int, default=1, show_default=True)
@click.option("--chunks", type=int, default=48, show_default=True, help="Chunks of new images.")
@click.option("--chunk-size", type=int, default=256, show_default=True)
@click.option("--steps", type=int, default=3000, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads.")
def refit_synthderm_lit(
    init_weights: str,
    out: str,
    data_seed: int,
    chunks: int,
    chunk_size: int,
    steps: int,
    threads: int | None,
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
        threads=threads,
        quiet=is_quiet(),
    )
    images = record["stage2"]["data"]["images"]
    click.echo(f"refitted the image projection on {images} images")
    echo_info(f"wrote {out}")


@click.command("evaluate-synthderm-lit")
@click.option(
    "--weights",
    type=UserPath(dir_okay=False, exists=True),
    default=None,
    help="synthderm-lit.safetensors of a training run. Default: the shipped weights.",
)
@click.option("--n", type=int, default=4000, show_default=True, help="Evaluation images.")
@click.option("--n-probe-train", type=int, default=4000, show_default=True)
@click.option("--seed", type=int, default=None, help="Evaluation seed (default 20261127).")
@click.option("--preset", default="iid", show_default=True)
@click.option("--device", default=None, help="torch device (default: cuda > mps > cpu).")
@click.option("--json", "json_path", type=UserPath(dir_okay=False), default=None)
@click.option(
    "--write-docs",
    type=UserPath(dir_okay=False),
    default=None,
    help="Update the measured-numbers block of this markdown file (docs/synthderm.md).",
)
@click.option(
    "--record",
    type=UserPath(dir_okay=False),
    default=None,
    help="Training record JSON to store the results in (key 'evaluation').",
)
def evaluate_synthderm_lit(
    weights: str | None,
    n: int,
    n_probe_train: int,
    seed: int | None,
    preset: str,
    device: str | None,
    json_path: str | None,
    write_docs: str | None,
    record: str | None,
) -> None:
    """Print every synthderm-lit quality figure measured on fresh SynthDerm images."""
    import json

    from conceptlens._io import atomic_write_text
    from conceptlens.synthderm._evaluate_lit import (
        EVAL_SEED,
        add_to_record,
        evaluate_lit,
        format_results,
        lit_backbone,
        write_docs_section,
    )

    backbone = lit_backbone(weights, device=device)
    res = evaluate_lit(
        backbone,
        n=n,
        n_probe_train=n_probe_train,
        seed=EVAL_SEED if seed is None else seed,
        preset=preset,
    )
    click.echo(format_results(res))
    if json_path:
        atomic_write_text(json_path, json.dumps(res, indent=1) + "\n")
    if write_docs:
        write_docs_section(res, write_docs)
    if record:
        add_to_record(res, record)
