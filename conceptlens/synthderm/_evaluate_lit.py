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

Images and prompts are encoded through :class:`~conceptlens.backbones.Backbone`, the
same encoders and prompt ensembling that :func:`conceptlens.score_concepts` uses. Run
``conceptlens backbone evaluate-synthderm-lit --help``.
"""

from __future__ import annotations

import dataclasses
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
    "evaluate_lit",
    "format_results",
    "lit_backbone",
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


def lit_backbone(weights: str | Path | None = None, *, device: str | None = None) -> Any:
    """A :class:`~conceptlens.backbones.Backbone` of synthderm-lit with ``weights``.

    ``None`` loads the shipped weights (``load_backbone("synthderm-lit")``); a path loads
    a training output (``synthderm-lit.safetensors``) into the same architecture, MiniLM
    text tower and preprocessing, fingerprinted by the file's hash.

    Example
    -------
    >>> from conceptlens.synthderm._evaluate_lit import lit_backbone
    >>> lit_backbone().encode_images(np.zeros((2, 96, 96, 3), np.uint8)).shape
    (2, 384)
    """
    from conceptlens.backbones import load_backbone

    return load_backbone("synthderm-lit", device=device, weights=weights)


def _prompt_matrix(
    backbone: Any, bank: Any, templates: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Concept and reference text embeddings as ``score_concepts`` computes them (the
    renormalised mean over prompts x ``templates``)."""
    from conceptlens.concepts import concept_text_embeddings

    text, ref, _ = concept_text_embeddings(backbone, bank, templates=templates, reference=True)
    return text, np.asarray(ref)


def _aurocs(scores: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    for j, n in enumerate(names):
        y = truth[:, j]
        out[n] = float(roc_auc_score(y, scores[:, j])) if 0 < y.sum() < len(y) else float("nan")
    return out


def evaluate_lit(
    backbone: Any = None,
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
    backbone : Backbone, optional
        synthderm-lit (shipped weights by default; :func:`lit_backbone` loads a training
        output).
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

    from conceptlens.concepts import load_bank
    from conceptlens.exceptions import ConfigError
    from conceptlens.synthderm._train_lit import TRAIN_SEED_BASE, _synthderm_class
    from conceptlens.synthderm._vocab import PARAPHRASES, SYNTHDERM_CONCEPTS

    if max(seed, probe_seed) >= TRAIN_SEED_BASE:
        raise ConfigError(
            f"evaluation seeds must be below the training range {TRAIN_SEED_BASE}; got "
            f"seed={seed}, probe_seed={probe_seed}"
        )
    t0 = time.perf_counter()
    if backbone is None:
        backbone = lit_backbone()
    names = [c for c, _ in SYNTHDERM_CONCEPTS]
    groups = dict(SYNTHDERM_CONCEPTS)
    gen = _synthderm_class()(preset, image_size=96)
    ev = gen.generate(n, seed=seed)
    emb = backbone.encode_images(ev.images, batch_size=batch_size)
    truth = np.asarray(ev.concepts)

    prompts = load_synthderm_bank_prompts()
    bank = load_bank("synthderm")
    paraphrased = bank.replace(
        concepts=tuple(
            dataclasses.replace(c, prompts=tuple(PARAPHRASES[c.name])) for c in bank.concepts
        ),
        templates=("{}",),
    )
    results: dict[str, Any] = {}
    # the bank's own templates (not the backbone's defaults), as written in the bank file;
    # the paraphrases are scored as they are; the reference is the bank's in both cases
    bank_templates = list(prompts["templates"])
    ref_sim = emb @ _prompt_matrix(backbone, bank, bank_templates)[1]
    for key, b, tpls in (
        ("zero_shot", bank, bank_templates),
        ("paraphrase", paraphrased, ["{}"]),
    ):
        cmat, _ = _prompt_matrix(backbone, b, tpls)
        order = [b.names.index(c) for c in names]
        sims = emb @ cmat[order].T
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
        emb_tr = backbone.encode_images(tr.images, batch_size=batch_size)
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
        "bank": prompts["source"],
        "templates": prompts["templates"],
        "reference_prompts": prompts["reference_prompts"],
        "backbone": backbone.name,
        "backbone_fingerprint": backbone.fingerprint,
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
