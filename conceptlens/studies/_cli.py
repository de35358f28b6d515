"""``conceptlens audit`` and ``conceptlens study masking``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from conceptlens._cli_options import UserPath, allow_mismatch_option, cache_dir_option, echo_info

__all__ = ["audit_command", "format_audit", "study"]

_AUDIT_KEYS = {
    "scores", "models", "inputs", "label", "split", "groups", "reference", "n_boot", "seed",
    "ci", "min_cases", "out", "shortcuts", "by",
}  # fmt: skip


def _load_input(name: str, path: str) -> Any:
    """The ``--input`` array of model ``name``: a numeric ``.npy`` file, checked."""
    import numpy as np

    from conceptlens._io import user_path
    from conceptlens.exceptions import DataError, MissingFileError

    p = user_path(path)
    if not p.is_file():
        raise MissingFileError(f"--input {name}={path}: no such file")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"--input {name}={path} is not a numeric .npy array ({exc}); save the model's "
            "input (e.g. image embeddings) with np.save(path, array)"
        ) from None
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"--input {name}={path} holds {type(x).__name__} "
            f"{getattr(x, 'dtype', '')}, not a numeric array; save it with np.save"
        )
    return x


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    from conceptlens.exceptions import ConfigError

    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            name, path = Path(v).name, v
        if not name or not path:
            raise click.BadParameter(
                f"{v!r}: give NAME=PATH (e.g. cbm=runs/head).", param_hint=what
            )
        if name in out:
            raise ConfigError(
                f"two {what} entries are named {name!r} ({out[name]} and {path}); one would "
                "silently replace the other. Name them apart with NAME=PATH."
            )
        out[name] = path
    return out


def _read_config(path: str) -> dict[str, Any]:
    from conceptlens._io import read_yaml
    from conceptlens.exceptions import ConfigError, MissingFileError

    p = Path(path).expanduser()
    if not p.exists():
        raise MissingFileError(f"study config {p} not found.")
    cfg = (
        read_yaml(p, what="study config", fix="see `conceptlens audit --help`.", error=ConfigError)
        or {}
    )
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"{p}: a study config is a mapping of options, got {type(cfg).__name__}."
        )
    unknown = sorted(set(cfg) - _AUDIT_KEYS)
    if unknown:
        raise ConfigError(f"{p}: unknown keys {unknown}; known keys are {sorted(_AUDIT_KEYS)}.")
    base = p.parent
    for key in ("scores", "out"):
        if key in cfg and not Path(str(cfg[key])).expanduser().is_absolute():
            cfg[key] = str(base / str(cfg[key]))
    for key in ("models", "inputs"):
        if key in cfg:
            if not isinstance(cfg[key], dict):
                raise ConfigError(f"{p}: `{key}` is a mapping name -> path.")
            cfg[key] = {
                str(k): str(v if Path(str(v)).expanduser().is_absolute() else base / str(v))
                for k, v in cfg[key].items()
            }
    return cfg


def format_audit(ds: Any) -> str:
    """The audit's headline table (group ``all`` and worst groups) as plain text.

    A worst-group row names the group worst in accuracy and gives that group's ``n``; each
    metric's value is that metric's worst group (``worst_group`` in the Dataset names it)."""
    import numpy as np

    lines = [
        f"{'model':<20}{'split':<18}{'group':<22}{'n':>6}"
        + "".join(f"{m:>24}" for m in ("accuracy", "balanced_accuracy", "auroc", "ece"))
    ]
    groups = [g for g in ds.group.values if g == "all" or str(g).startswith("worst:")]
    for model in ds.model.values:
        for split in ds.split.values:
            for g in groups:
                cells = []
                for metric in ("accuracy", "balanced_accuracy", "auroc", "ece"):
                    v = ds.metrics.sel(model=model, split=split, group=g, metric=metric).values
                    cells.append(
                        "n/a" if np.isnan(v[0]) else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"
                    )
                n = int(ds.n_cases.sel(split=split, group=g))
                label = str(g)
                if label.startswith("worst:") and "worst_group" in ds:
                    by_acc = ds.worst_group.sel(model=model, split=split, group=g)
                    worst = str(by_acc.sel(metric="accuracy").values)
                    label += f" ({worst.split('=')[-1]})"
                    if worst in set(map(str, ds.group.values)):
                        n = int(ds.n_cases.sel(split=split, group=worst))
                lines.append(
                    f"{model:<20}{split:<18}{label:<22}{n:>6}" + "".join(f"{c:>24}" for c in cells)
                )
    ref = ds.attrs.get("reference_split")
    if ref is not None and ds.sizes["split"] > 1:
        lines.append("")
        lines.append(f"gap (reference split {ref!r} minus split), macro AUROC, all cases:")
        for model in ds.model.values:
            for split in ds.split.values:
                if split == ref:
                    continue
                v = ds.gap.sel(model=model, split=split, group="all", metric="auroc").values
                lines.append(f"  {model:<20}{split:<18}{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]")
    for pair in ds.pair.values:
        v = ds.paired.sel(pair=pair, group="all", metric="auroc").sel(stat="estimate").values
        p = ds.paired_p_value.sel(pair=pair, group="all", metric="auroc").values
        lines.append("")
        lines.append(f"paired difference {pair}, macro AUROC (bootstrap p):")
        for split, d, pv in zip(ds.split.values, v, p, strict=True):
            lines.append(f"  {split:<18}{d:+.3f} (p={pv:.3g})")
    lines.append("")
    lines.append(
        f"{ds.attrs.get('ci', 0.95):.0%} stratified bootstrap intervals, "
        f"{ds.attrs.get('n_boot')} replicates, seed {ds.attrs.get('seed')}."
    )
    return "\n".join(lines)


@click.command(name="audit")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=UserPath(dir_okay=False),
    help="YAML study config (keys: scores, models, inputs, label, split, groups, "
    "reference, n_boot, seed, ci, min_cases, out, shortcuts, by).",
)
@click.option(
    "--scores",
    "scores_path",
    default=None,
    type=UserPath(),
    help="netCDF concept scores with metadata (from `conceptlens score`).",
)
@click.option(
    "--model",
    "model_specs",
    multiple=True,
    help="NAME=FOLDER of a head written by `conceptlens fit` (repeatable).",
)
@click.option(
    "--input",
    "input_specs",
    multiple=True,
    help="NAME=FILE.npy: the input of model NAME if not the scores (e.g. embeddings).",
)
@click.option(
    "--label-column", "--label", "label", default=None, help="Label column.  [default: label]"
)
@click.option("--split", default=None, help="Metadata column of the splits.  [default: site]")
@click.option(
    "--group", "groups", multiple=True, help="Metadata column to break down by (repeatable)."
)
@click.option("--reference", default=None, help="The in-domain split of the gap.")
@click.option(
    "--n-boot",
    type=click.IntRange(min=0),
    default=None,
    help="Bootstrap replicates.  [default: 1000]",
)
@click.option("--seed", type=int, default=None, help="Bootstrap seed.  [default: 0]")
@click.option(
    "--shortcuts/--no-shortcuts",
    default=None,
    help="Also rank shortcut suspects of each concept head (find_shortcuts).",
)
@click.option("--out", default=None, type=UserPath(), help="Output netCDF of the audit.")
@allow_mismatch_option
def audit_command(config_path, scores_path, model_specs, input_specs, label, split, groups,
                  reference, n_boot, seed, shortcuts, out, allow_score_mismatch):  # fmt: skip
    """Audit models across splits and groups; print the summary and write the Dataset."""

    from conceptlens._cli_options import read_scores, warn_in_sample
    from conceptlens.heads import load_head
    from conceptlens.studies import audit, find_shortcuts, save_audit

    cfg = _read_config(config_path) if config_path else {}
    cli = {
        "scores": scores_path, "label": label, "split": split, "reference": reference,
        "n_boot": n_boot, "seed": seed, "out": out, "shortcuts": shortcuts,
        "models": _pairs(model_specs, "--model") or None,
        "inputs": _pairs(input_specs, "--input") or None,
        "groups": list(groups) or None,
    }  # fmt: skip
    opts = {**cfg, **{k: v for k, v in cli.items() if v is not None}}
    if not opts.get("scores") or not opts.get("models"):
        raise click.UsageError("pass --scores and at least one --model NAME=FOLDER (or --config).")
    scores = read_scores(opts["scores"])
    # heads that read the scores must come from the same score mode, bank and backbone
    on_other_input = set(opts.get("inputs") or {})
    models = {
        name: load_head(
            path,
            scores=None if name in on_other_input else scores,
            allow_mismatch=allow_score_mismatch,
        )
        for name, path in opts["models"].items()
    }
    for name, model in models.items():
        warn_in_sample(model, scores, where=str(opts["scores"]), name=f"model {name!r}")
    inputs = {}
    for name, path in (opts.get("inputs") or {}).items():
        inputs[name] = _load_input(name, path)
    ds = audit(
        models, scores, inputs=inputs, labels=opts.get("label", "label"),
        split=opts.get("split", "site"), groups=opts.get("groups") or (),
        reference=opts.get("reference"), n_boot=int(opts.get("n_boot", 1000)),
        seed=int(opts.get("seed", 0)), ci=float(opts.get("ci", 0.95)),
        min_cases=int(opts.get("min_cases", 10)),
    )  # fmt: skip
    click.echo(format_audit(ds))
    if opts.get("shortcuts"):
        for name, model in models.items():
            if name in inputs:
                continue
            df = find_shortcuts(
                model, scores, labels=opts.get("label", "label"),
                by=opts.get("by", opts.get("split", "site")),
            )  # fmt: skip
            click.echo(f"\nshortcut suspects of {name} (reliance x shift):")
            cols = ["concept", "class", "suspicion", "suspect", "reliance", "shift"]
            click.echo(df[cols].head(10).to_string(index=False, float_format="%.3f"))
    if opts.get("out"):
        save_audit(ds, Path(str(opts["out"])).expanduser())
        echo_info(f"wrote {opts['out']}")


@click.group(name="study")
def study() -> None:
    """Studies: the shortcut-masking grid (Mask of truth protocol)."""


@study.command(name="masking")
@click.option(
    "--manifest",
    default=None,
    type=UserPath(),
    help="CSV manifest with labels and an ROI mask column (or a folder holding "
    "manifest.csv, as `conceptlens data synthderm` writes).",
)
@click.option(
    "--synthderm", "preset", default=None, help="Generate SynthDerm with this preset instead."
)
@click.option("--n", default=600, show_default=True, help="SynthDerm images (with --synthderm).")
@click.option(
    "--roi",
    default=None,
    help="ROI mask name.  [default: lesion_mask for SynthDerm, else roi_mask]",
)
@click.option(
    "--fill",
    default="black",
    show_default=True,
    type=click.Choice(["black", "mean", "blur", "inpaint"]),
)
@click.option(
    "--dilation",
    "dilations",
    multiple=True,
    type=int,
    help="ROI dilation in pixels, negative erodes (repeatable).  [default: 0]",
)
@click.option(
    "--metadata",
    "metadata_columns",
    multiple=True,
    help="Column of the metadata-only baseline (repeatable).",
)
@click.option("--backbone", default="synthderm-lit", show_default=True)
@click.option("--bank", default="synthderm", show_default=True)
@cache_dir_option
@click.option(
    "--no-cache",
    is_flag=True,
    help="Keep no embeddings (a temporary cache for this run only; default: reuse and "
    "extend the embedding cache, so a rerun encodes no image again).",
)
@click.option("--n-boot", default=1000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--out", required=True, type=UserPath(), help="Output netCDF of the grid.")
def masking(manifest, preset, n, roi, fill, dilations, metadata_columns, backbone, bank,
            cache_dir, no_cache, n_boot, seed, out):  # fmt: skip
    """Train on each ROI condition, evaluate on each; print the AUROC grids."""
    from conceptlens._io import atomic_path, cache_root
    from conceptlens.studies import masking_study

    if (manifest is None) == (preset is None):
        raise click.UsageError("pass exactly one of --manifest PATH or --synthderm PRESET.")
    if no_cache and cache_dir is not None:
        raise click.UsageError("pass either --cache-dir or --no-cache, not both.")
    cache = None if no_cache else (Path(cache_dir) if cache_dir else cache_root())
    if preset is not None:
        from conceptlens import SynthDerm

        dataset = SynthDerm(preset).generate(int(n), seed=int(seed)).to_dataset()
        roi = roi or "lesion_mask"
    else:
        from conceptlens.data import load_manifest
        from conceptlens.data._cli import manifest_file

        dataset = load_manifest(manifest_file(manifest, "--manifest"))
        roi = roi or "roi_mask"
    res = masking_study(
        dataset, roi=roi, fill=fill, dilations=list(dilations) or [0],
        metadata_columns=list(metadata_columns), backbone=backbone, bank=bank,
        cache=cache, n_boot=int(n_boot), seed=int(seed),
    )  # fmt: skip
    click.echo(format_masking(res))
    with atomic_path(Path(out).expanduser()) as tmp:
        res.to_netcdf(tmp, engine="netcdf4")
    echo_info(f"wrote {out}")


def format_masking(res: Any) -> str:
    """Macro AUROC grid (rows: trained on, columns: evaluated on) per model and dilation."""
    lines = []
    conds = [str(c) for c in res.train_condition.values]
    for model in res.model.values:
        for d in res.dilation.values:
            lines.append(
                f"{model}, dilation {int(d)}: macro AUROC (rows trained on, columns evaluated on)"
            )
            lines.append(f"{'':<14}" + "".join(f"{c:>22}" for c in conds))
            for tc in conds:
                cells = []
                for ec in conds:
                    v = res.macro_auroc.sel(model=model, dilation=d, train_condition=tc,
                                            eval_condition=ec).values  # fmt: skip
                    cells.append(f"{v[0]:.3f} [{v[1]:.2f}, {v[2]:.2f}]")
                lines.append(f"{tc:<14}" + "".join(f"{c:>22}" for c in cells))
            lines.append("")
    if "metadata_macro_auroc" in res:
        v = res.metadata_macro_auroc.values
        lines.append(f"metadata-only baseline ({res.attrs['metadata_columns']}): "
                     f"macro AUROC {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]")  # fmt: skip
    a = res.attrs
    lines.append(
        f"fill {a['fill']}, ROI {a['roi']!r}, {a['n_train']} training / {a['n_test']} test images"
    )
    return "\n".join(lines)
