"""Quality evaluation of synthderm-lit on fresh SynthDerm images.

Measures, on a seed never used in training (all evaluation seeds are below
:data:`conceptlens.synthderm._train_lit.TRAIN_SEED_BASE`):

- zero-shot concept detection AUROC: cosine similarity between the image embedding and
  the concept's prompts from ``concept_banks/synthderm.yaml`` (templates applied, prompt
  embeddings averaged and renormalised), both plain (``cosine``) and relative to the bank's
  reference prompt (``relative``: cosine minus the cosine with the reference);
- the same with the held-out ``PARAPHRASES`` (never used in captions);
- a linear probe (sklearn ``LogisticRegression``) on the image embeddings per concept,
  trained on a separate probe-training seed;
- on the ``iid`` preset, class accuracy of a linear probe on image embeddings and of a
  logistic regression on the ground-truth concept vectors.

Run ``python -m conceptlens.synthderm._evaluate_lit --help`` or
``conceptlens backbone evaluate-synthderm-lit``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EVAL_SEED",
    "add_to_record",
    "compute_checks",
    "PROBE_TRAIN_SEED",
    "THRESHOLDS",
    "embed_images",
    "embed_prompts",
    "evaluate_lit",
    "format_results",
    "load_synthderm_bank_prompts",
    "write_docs_section",
]

EVAL_SEED = 20_261_127
PROBE_TRAIN_SEED = 20_261_128
THRESHOLDS = {
    "zero_shot_mean": 0.90,
    "zero_shot_min": 0.75,
    "zero_shot_artifact_min": 0.95,
    "paraphrase_mean": 0.85,
    "probe_min": 0.95,
}
DOCS_START = "<!-- synthderm-lit-evaluation:start -->"
DOCS_END = "<!-- synthderm-lit-evaluation:end -->"


def load_synthderm_bank_prompts() -> dict[str, Any]:
    """Prompts, templates and reference prompts of the shipped SynthDerm bank.

    Reads the bank through :func:`conceptlens.concepts.load_bank` (``"synthderm"``), so
    the evaluation scores exactly the prompts that ``score_concepts`` scores.

    Returns
    -------
    dict
        ``prompts`` (concept -> list of str), ``templates``, ``reference_prompts``,
        ``source`` (``"synthderm@<version>"``), ``groups`` (concept -> group).

    Example
    -------
    >>> from conceptlens.synthderm._evaluate_lit import load_synthderm_bank_prompts
    >>> "hair" in load_synthderm_bank_prompts()["prompts"]
    True
    """
    from conceptlens.concepts import load_bank
    from conceptlens.synthderm._vocab import SYNTHDERM_CONCEPTS

    groups = dict(SYNTHDERM_CONCEPTS)
    bank = load_bank("synthderm")
    prompts = {c.name: list(c.prompts) for c in bank.concepts}
    return {
        "prompts": {n: prompts[n] for n in groups if n in prompts},
        "templates": list(bank.templates or ("{}",)),
        "reference_prompts": list(bank.reference_prompts),
        "source": f"{bank.id}@{bank.version}",
        "groups": groups,
    }


def embed_images(model: Any, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """L2-normalised image embeddings (float32, (N, D)) of uint8 (N, 96, 96, 3) images.

    Example
    -------
    >>> import numpy as np
    >>> from conceptlens.backbones._synthderm_lit import build_synthderm_lit
    >>> from conceptlens.synthderm._evaluate_lit import embed_images
    >>> model, _ = build_synthderm_lit()
    >>> embed_images(model, np.zeros((2, 96, 96, 3), np.uint8)).shape
    (2, 384)
    """
    import torch

    from conceptlens.synthderm._train_lit import _normalize_images

    dev = next(model.visual.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = _normalize_images(
                torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size])), dev
            )
            out.append(model.encode_image(x, normalize=True).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def embed_prompts(
    model: Any, tokenizer: Any, prompts: list[str], templates: list[str] | None = None
) -> np.ndarray:
    """One L2-normalised embedding (D,) for a set of prompts x templates (averaged).

    Example
    -------
    >>> from conceptlens.backbones._synthderm_lit import build_synthderm_lit
    >>> from conceptlens.synthderm._evaluate_lit import embed_prompts
    >>> model, tok = build_synthderm_lit()
    >>> embed_prompts(model, tok, ["hair", "strands of hair"]).shape
    (384,)
    """
    import torch

    texts = [t.format(p) for p in prompts for t in (templates or ["{}"])]
    dev = next(model.visual.parameters()).device
    ids = tokenizer(texts)
    # drop all-padding columns: exact, since padding is masked out of attention and pooling
    ids = ids[:, : int((ids != 0).any(0).nonzero().max()) + 1]
    with torch.no_grad():
        z = model.encode_text(ids.to(dev), normalize=True).float().cpu().numpy()
    m = z.mean(0)
    return (m / np.linalg.norm(m)).astype(np.float32)


def _aurocs(scores: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    for j, n in enumerate(names):
        y = truth[:, j]
        out[n] = float(roc_auc_score(y, scores[:, j])) if 0 < y.sum() < len(y) else float("nan")
    return out


def evaluate_lit(
    model: Any = None,
    tokenizer: Any = None,
    *,
    n: int = 4000,
    n_probe_train: int = 4000,
    seed: int = EVAL_SEED,
    probe_seed: int = PROBE_TRAIN_SEED,
    preset: str = "iid",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Compute every synthderm-lit quality figure on freshly generated images.

    Parameters
    ----------
    model, tokenizer : optional
        From :func:`~conceptlens.backbones._synthderm_lit.build_synthderm_lit`; by default
        the shipped weights are loaded.
    n : int
        Evaluation images (seed ``seed``).
    n_probe_train : int
        Images the linear probes are trained on (seed ``probe_seed``); 0 skips the probes.
    seed, probe_seed : int
        Generator seeds (must be below the training seed range).
    preset : str
        SynthDerm preset of both sets (the class accuracies are defined on ``iid``).
    batch_size : int
        Images per forward pass.

    Returns
    -------
    dict
        ``zero_shot`` / ``paraphrase`` (per mode: per-concept AUROC, mean, min, artifact
        min), ``probe`` (per-concept AUROC), ``class_accuracy`` (``image_probe``,
        ``concept_lr``), ``checks`` (criterion -> bool), ``setup``.

    Example
    -------
    >>> from conceptlens.synthderm._evaluate_lit import evaluate_lit
    >>> res = evaluate_lit(n=300, n_probe_train=0)  # doctest: +SKIP
    >>> res["zero_shot"]["relative"]["artifact_min"] > 0.9  # doctest: +SKIP
    True
    """
    import time

    from conceptlens.backbones._synthderm_lit import build_synthderm_lit
    from conceptlens.synthderm._train_lit import TRAIN_SEED_BASE, _synthderm_class
    from conceptlens.synthderm._vocab import PARAPHRASES, SYNTHDERM_CONCEPTS

    if max(seed, probe_seed) >= TRAIN_SEED_BASE:
        raise ValueError(f"evaluation seeds must be below the training range {TRAIN_SEED_BASE}")
    t0 = time.perf_counter()
    if model is None or tokenizer is None:
        model, tokenizer = build_synthderm_lit()
    model.eval()
    names = [c for c, _ in SYNTHDERM_CONCEPTS]
    groups = dict(SYNTHDERM_CONCEPTS)
    gen = _synthderm_class()(preset, image_size=96)
    ev = gen.generate(n, seed=seed)
    emb = embed_images(model, ev.images, batch_size=batch_size)
    truth = np.asarray(ev.concepts)

    bank = load_synthderm_bank_prompts()
    ref = embed_prompts(
        model,
        tokenizer,
        bank["reference_prompts"] or ["a dermoscopy image of skin"],
        bank["templates"],
    )
    ref_sim = emb @ ref
    results: dict[str, Any] = {}
    for key, prompts, templates in (
        ("zero_shot", bank["prompts"], bank["templates"]),
        ("paraphrase", PARAPHRASES, ["{}"]),
    ):
        cmat = np.stack([embed_prompts(model, tokenizer, prompts[c], templates) for c in names])
        sims = emb @ cmat.T
        results[key] = {}
        for mode, scores in (("cosine", sims), ("relative", sims - ref_sim[:, None])):
            per = _aurocs(scores, truth, names)
            vals = np.array(list(per.values()))
            results[key][mode] = {
                "per_concept": per,
                "mean": float(np.nanmean(vals)),
                "min": float(np.nanmin(vals)),
                "artifact_min": float(min(per[c] for c in names if groups[c] == "artifact")),
            }

    if n_probe_train:
        from sklearn.linear_model import LogisticRegression

        tr = gen.generate(n_probe_train, seed=probe_seed)
        emb_tr = embed_images(model, tr.images, batch_size=batch_size)
        truth_tr = np.asarray(tr.concepts)
        probe_scores = np.zeros_like(truth, dtype=np.float64)
        for j in range(len(names)):
            clf = LogisticRegression(C=10.0, max_iter=3000)
            clf.fit(emb_tr, truth_tr[:, j])
            probe_scores[:, j] = clf.decision_function(emb)
        per = _aurocs(probe_scores, truth, names)
        results["probe"] = {
            "per_concept": per,
            "mean": float(np.nanmean(list(per.values()))),
            "min": float(np.nanmin(list(per.values()))),
        }
        img_clf = LogisticRegression(C=10.0, max_iter=3000).fit(emb_tr, np.asarray(tr.labels))
        cpt_clf = LogisticRegression(C=10.0, max_iter=3000).fit(truth_tr, np.asarray(tr.labels))
        results["class_accuracy"] = {
            "preset": preset,
            "image_probe": float(img_clf.score(emb, np.asarray(ev.labels))),
            "concept_lr": float(cpt_clf.score(truth, np.asarray(ev.labels))),
        }

    checks = compute_checks(results)
    results["checks"] = checks
    results["setup"] = {
        "preset": preset,
        "n_eval": n,
        "eval_seed": seed,
        "n_probe_train": n_probe_train,
        "probe_seed": probe_seed,
        "bank": bank["source"],
        "templates": bank["templates"],
        "reference_prompts": bank["reference_prompts"],
        "probe": "sklearn LogisticRegression(C=10, max_iter=3000) on L2-normalised embeddings",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return results


def compute_checks(results: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail of each quality criterion, for both scoring modes.

    Returns
    -------
    dict
        ``{"cosine": {...}, "relative": {...}}`` with ``zero_shot_mean``, ``zero_shot_min``,
        ``zero_shot_artifact_min``, ``paraphrase_mean`` and ``probe_min`` (probe does not
        depend on the mode) booleans.
    """
    out: dict[str, Any] = {}
    for mode in ("cosine", "relative"):
        zs, pp = results["zero_shot"][mode], results["paraphrase"][mode]
        c = {
            "zero_shot_mean": zs["mean"] >= THRESHOLDS["zero_shot_mean"],
            "zero_shot_min": zs["min"] >= THRESHOLDS["zero_shot_min"],
            "zero_shot_artifact_min": zs["artifact_min"] >= THRESHOLDS["zero_shot_artifact_min"],
            "paraphrase_mean": pp["mean"] >= THRESHOLDS["paraphrase_mean"],
        }
        if "probe" in results:
            c["probe_min"] = results["probe"]["min"] >= THRESHOLDS["probe_min"]
        out[mode] = c
    return out


def format_results(res: dict[str, Any]) -> str:
    """Markdown tables of :func:`evaluate_lit` results.

    Example
    -------
    >>> from conceptlens.synthderm._evaluate_lit import format_results
    >>> print(format_results(res))  # doctest: +SKIP
    """
    from conceptlens.synthderm._vocab import SYNTHDERM_CONCEPTS

    s = res["setup"]
    lines = [
        f"Measured on {s['n_eval']} fresh `{s['preset']}` images (seed {s['eval_seed']}); "
        f"probes trained on {s['n_probe_train']} more (seed {s['probe_seed']}). "
        f"Prompts: bank `{s['bank']}`, "
        f"reference prompt(s) {s['reference_prompts']}.",
        "",
    ]
    has_probe = "probe" in res
    head = (
        "| concept | group | zero-shot cosine | zero-shot relative | paraphrase cosine "
        "| paraphrase relative |"
    )
    sep = "|---|---|---|---|---|---|"
    if has_probe:
        head += " linear probe |"
        sep += "---|"
    lines += [head, sep]
    zs, pp = res["zero_shot"], res["paraphrase"]
    for c, g in SYNTHDERM_CONCEPTS:
        row = (
            f"| {c} | {g} | {zs['cosine']['per_concept'][c]:.3f} | "
            f"{zs['relative']['per_concept'][c]:.3f} | {pp['cosine']['per_concept'][c]:.3f} | "
            f"{pp['relative']['per_concept'][c]:.3f} |"
        )
        if has_probe:
            row += f" {res['probe']['per_concept'][c]:.3f} |"
        lines.append(row)
    for stat in ("mean", "min", "artifact_min"):
        row = (
            f"| **{stat}** | | {zs['cosine'][stat]:.3f} | {zs['relative'][stat]:.3f} | "
            f"{pp['cosine'][stat]:.3f} | {pp['relative'][stat]:.3f} |"
        )
        if has_probe:
            row += f" {res['probe'][stat]:.3f} |" if stat in res["probe"] else " |"
        lines.append(row)
    lines.append("")
    if "class_accuracy" in res:
        ca = res["class_accuracy"]
        lines.append(
            f"Class accuracy on `{ca['preset']}`: linear probe on image embeddings "
            f"**{ca['image_probe']:.3f}**, logistic regression on ground-truth concepts "
            f"**{ca['concept_lr']:.3f}**."
        )
        lines.append("")
    checks = compute_checks(res)
    for mode in ("cosine", "relative"):
        lines.append(
            f"- criteria with `{mode}` scoring: "
            + ", ".join(f"{k} {'pass' if v else 'FAIL'}" for k, v in checks[mode].items())
        )
    return "\n".join(lines) + "\n"


def write_docs_section(res: dict[str, Any], path: str | Path) -> Path:
    """Replace the evaluation block of ``docs/synthderm.md`` with the given results.

    The block sits between ``<!-- synthderm-lit-evaluation:start -->`` and ``...:end -->``;
    it is appended under a ``## synthderm-lit backbone`` heading if absent.
    """
    from conceptlens._io import atomic_write_text

    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = f"{DOCS_START}\n{format_results(res)}{DOCS_END}"
    if DOCS_START in text and DOCS_END in text:
        text = re.sub(
            re.escape(DOCS_START) + ".*?" + re.escape(DOCS_END), lambda _: block, text, flags=re.S
        )
    else:
        if "## synthderm-lit backbone" not in text:
            text = text.rstrip("\n") + "\n\n## synthderm-lit backbone\n"
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(path, text)
    return path


def add_to_record(res: dict[str, Any], record_path: str | Path) -> Path:
    """Store evaluation results under ``"evaluation"`` in a training record JSON (atomic)."""
    from conceptlens._io import atomic_write_text

    path = Path(record_path)
    record = json.loads(path.read_text(encoding="utf-8"))
    record["evaluation"] = {**res, "checks": compute_checks(res)}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m conceptlens.synthderm._evaluate_lit", description=__doc__.split("\n")[0]
    )
    p.add_argument("--weights", default=None, help="weights file (default: shipped)")
    p.add_argument("--minilm-path", default=None, help="MiniLM folder (default: verified package)")
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--n-probe-train", type=int, default=4000)
    p.add_argument("--seed", type=int, default=EVAL_SEED)
    p.add_argument("--preset", default="iid")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    p.add_argument(
        "--record",
        default=None,
        help="training record JSON (synthderm-lit.json) to store the results in, key 'evaluation'",
    )
    p.add_argument(
        "--write-docs", default=None, help="update this markdown file (docs/synthderm.md)"
    )
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (see ``--help``)."""
    from conceptlens._io import atomic_write_text
    from conceptlens.backbones._synthderm_lit import build_synthderm_lit

    a = _parser().parse_args(argv)
    model, tok = build_synthderm_lit(weights=a.weights, minilm_path=a.minilm_path)
    if a.device:
        model.to(a.device)
    res = evaluate_lit(
        model, tok, n=a.n, n_probe_train=a.n_probe_train, seed=a.seed, preset=a.preset
    )
    print(format_results(res))
    if a.json:
        atomic_write_text(a.json, json.dumps(res, indent=1) + "\n")
    if a.write_docs:
        write_docs_section(res, a.write_docs)
    if a.record:
        add_to_record(res, a.record)
    return res


if __name__ == "__main__":
    main()
