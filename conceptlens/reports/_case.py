"""Case report: one image, its prediction, the concepts behind it and what-if changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from conceptlens.exceptions import DataError, UnknownNameError
from conceptlens.reports._common import (
    data_fingerprint,
    model_description,
    now,
    package_versions,
    score_provenance,
)
from conceptlens.reports._pdf import open_report

__all__ = ["case_report", "what_if"]


def _one_sample(scores: xr.DataArray, sample: Any) -> xr.DataArray:
    if not isinstance(scores, xr.DataArray) or "sample" not in scores.dims:
        raise DataError(
            "scores must be an xr.DataArray with a 'sample' dim (score_concepts output)."
        )
    if isinstance(sample, (int, np.integer)):
        if not -len(scores.sample) <= int(sample) < len(scores.sample):
            raise DataError(
                f"sample {sample} is out of range: the scores hold {len(scores.sample)}."
            )
        return scores.isel(sample=[int(sample)])
    ids = [str(s) for s in scores["sample"].values] if "sample" in scores.coords else []
    if str(sample) not in ids:
        raise UnknownNameError(f"sample {sample!r} is not in the scores (first ids: {ids[:5]}).")
    return scores.isel(sample=[ids.index(str(sample))])


def what_if(
    model: Any,
    scores: xr.DataArray,
    *,
    k: int = 3,
    reference_scores: Any = None,
) -> list[dict[str, Any]]:
    """The ``k`` concepts that push the predicted class most, each changed on its own.

    Each concept with a positive contribution to the predicted class is set to its
    "absent" level (5th percentile of ``reference_scores``) when its score lies above the
    training mean, else to "present" (95th); without ``reference_scores`` it is set to
    its training mean (zero contribution).

    Parameters
    ----------
    model : fitted concept head
    scores : xr.DataArray (sample, concept) with one sample
    k : int, default=3
    reference_scores : xr.DataArray, optional
        The head's training scores.

    Returns
    -------
    list of dict
        ``concept``, ``change`` (``"absent"``, ``"present"`` or ``"mean"``), ``score_before``,
        ``score_after``, ``prediction_before``, ``prediction_after``, ``proba_before``,
        ``proba_after`` (of the class predicted before).
    """
    from conceptlens.explain import contributions, head_parameters
    from conceptlens.masking import intervene

    c = contributions(model, scores).isel(sample=0)
    logit = c.sum("concept") + c["base_value"]
    pred = str(c["class"].values[int(np.argmax(logit.values))])
    row = c.sel({"class": pred})
    baseline = head_parameters(model)["baseline"]
    out = []
    for j in np.argsort(-row.values, kind="stable")[:k]:
        if row.values[j] <= 0:
            break
        name = str(row["concept"].values[j])
        score = float(row["score"].values[j]) if "score" in row.coords else float("nan")
        if reference_scores is not None:
            change = "absent" if score > float(baseline.sel(concept=name)) else "present"
            value: Any = change
        else:
            change, value = "mean", float(baseline.sel(concept=name))
        res = intervene(model, scores, {name: value}, reference_scores=reference_scores)
        out.append(
            {
                "concept": name,
                "change": change,
                "score_before": score,
                "score_after": float(res.score_after.sel(concept=name).values[0]),
                "prediction_before": str(res.prediction_before.values[0]),
                "prediction_after": str(res.prediction_after.values[0]),
                "proba_before": float(res.proba_before.sel({"class": pred}).values[0]),
                "proba_after": float(res.proba_after.sel({"class": pred}).values[0]),
            }
        )
    return out


def case_report(
    path: str | Path,
    model: Any,
    scores: xr.DataArray,
    sample: Any = 0,
    *,
    image: Any = None,
    reference_scores: Any = None,
    label: str | None = None,
    concept_maps: xr.DataArray | None = None,
    n_concepts: int = 10,
    n_what_if: int = 3,
    title: str | None = None,
) -> Path:
    """Write a one-image PDF report: prediction, contributing concepts, what-if changes.

    Parameters
    ----------
    path : path
        The PDF to write (atomically).
    model : fitted concept head
        A ``ConceptBottleneckClassifier`` (or any head :mod:`conceptlens.explain` reads).
    scores : xr.DataArray (sample, concept)
        Concept scores holding the case (``score_concepts`` output: its attrs give the
        backbone and bank provenance).
    sample : int or str, default=0
        Position or id of the case in ``scores``.
    image : array (H, W, 3), optional
        The image, drawn on the first page.
    reference_scores : xr.DataArray, optional
        The head's training scores: the what-if changes then set a concept to its
        "absent" / "present" level (5th / 95th percentile) instead of its mean.
    label : str, optional
        The true class, when known; default the case's ``label`` coordinate if present.
    concept_maps : xr.DataArray, optional
        ``conceptlens.spatial.concept_maps`` output for the case; drawn over the image
        for the top concepts when :mod:`conceptlens.spatial` is installed.
    n_concepts : int, default=10
        Concepts in the waterfall and the table.
    n_what_if : int, default=3
        What-if changes (top positive contributors to the predicted class).
    title : str, optional

    Returns
    -------
    pathlib.Path
        The PDF written.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, xarray as xr
    >>> from conceptlens.heads import ConceptBottleneckClassifier
    >>> from conceptlens.reports import case_report
    >>> rng = np.random.default_rng(0)
    >>> s = xr.DataArray(rng.normal(size=(200, 2)), dims=("sample", "concept"),
    ...                  coords={"concept": ["veil", "ruler"]})
    >>> y = np.where(s.sel(concept="veil") > 0, "mel", "nev")
    >>> cbm = ConceptBottleneckClassifier(C=1.0).fit(s, y)
    >>> out = case_report(pathlib.Path(tempfile.mkdtemp()) / "case.pdf", cbm, s, 0)
    >>> out.stat().st_size > 1000
    True
    """
    from conceptlens.explain import contributions
    from conceptlens.heads import used_in_fit
    from conceptlens.plot import contribution_waterfall

    one = _one_sample(scores, sample)
    sid = str(one["sample"].values[0]) if "sample" in one.coords else str(sample)
    if label is None and "label" in one.coords:
        label = str(one["label"].values[0])
    c = contributions(model, one)
    logit = (c.sum("concept") + c["base_value"]).isel(sample=0)
    classes = [str(v) for v in c["class"].values]
    proba = np.asarray(model.predict_proba(one))[0]
    pred = str(np.asarray(model.predict(one))[0])
    changes = what_if(model, one, k=n_what_if, reference_scores=reference_scores)
    prov = score_provenance(scores, getattr(model, "trained_on_", None) or {})
    seen = used_in_fit(model, one)
    in_sample = {
        "case among the head's training samples": (
            "not recorded" if seen is None else ("yes (in-sample)" if seen[0] else "no")
        )
    }

    title = title or f"Case report: {sid}"
    with open_report(
        path,
        title=title,
        subject="conceptlens case report",
        keywords=["concept bottleneck", "case report", pred],
    ) as doc:
        doc.title(
            title,
            f"generated {now()} by conceptlens; prediction of a concept-bottleneck "
            "head, with the concepts behind it"
            + (
                ". NOTE: this case was used to fit the head, so its prediction is in-sample"
                if seen is not None and seen[0]
                else ""
            ),
        )
        top = doc.row(3.0)
        if image is not None:
            doc.axes_at(lambda ax: _draw_image(ax, image, sid), top, 3.0, width=3.2, left=-1.3)
        doc.axes_at(
            lambda ax: _draw_proba(ax, classes, proba, pred, label),
            top,
            3.0,
            width=4.2,
            left=2.9 if image is not None else 0.0,
        )
        verdict = f"predicted {pred} (probability {proba[classes.index(pred)]:.2f})"
        if label is not None:
            verdict += f"; true class {label} ({'correct' if label == pred else 'wrong'})"
        doc.heading("Prediction")
        doc.paragraph(
            verdict
            + ". "
            + ", ".join(
                f"{k}: probability {p:.3f}, logit {float(logit.sel({'class': k})):+.2f}"
                for k, p in zip(classes, proba, strict=True)
            )
            + "."
        )
        if "site" in one.coords:
            doc.paragraph(f"site: {one['site'].values[0]}")

        doc.heading(f"Concepts behind '{pred}'")
        n_show = min(n_concepts, len(c["concept"]))
        doc.plot(
            lambda ax: contribution_waterfall(c, 0, pred, max_concepts=n_show, ax=ax),
            height=0.3 * n_show + 1.4,
            pad_left=2.2,
        )
        row = c.isel(sample=0).sel({"class": pred})
        order = np.argsort(-np.abs(row.values), kind="stable")[:n_show]
        groups = row["concept_group"].values if "concept_group" in row.coords else None
        doc.table(
            ["concept", "group", "score", "training mean", "contribution"],
            [
                [
                    str(row["concept"].values[j]),
                    str(groups[j]) if groups is not None else "",
                    f"{float(row['score'].values[j]):.3f}",
                    f"{float(row['baseline'].values[j]):.3f}",
                    f"{float(row.values[j]):+.3f}",
                ]
                for j in order
            ],
        )
        doc.paragraph(
            f"Contribution = weight x (score - training mean); the base value "
            f"{float(row['base_value']):+.2f} plus the contributions of all concepts gives "
            f"the {pred} logit {float(logit.sel({'class': pred})):+.2f}."
        )

        doc.heading("What if? (one concept changed at a time)")
        if changes:
            doc.table(
                ["concept", "set to", "score", "new score", f"P({pred})", "new", "prediction"],
                [
                    [
                        ch["concept"],
                        ch["change"],
                        f"{ch['score_before']:.3f}",
                        f"{ch['score_after']:.3f}",
                        f"{ch['proba_before']:.3f}",
                        f"{ch['proba_after']:.3f}",
                        ch["prediction_after"],
                    ]
                    for ch in changes
                ],
            )
            flips = [ch["concept"] for ch in changes if ch["prediction_after"] != pred]
            doc.paragraph(
                "Changing " + ", ".join(flips) + " alone changes the prediction."
                if flips
                else "No single change among these changes the prediction."
            )
        else:
            doc.paragraph(f"No concept contributes positively to {pred}; nothing to change.")

        _spatial_section(
            doc, image, concept_maps, sid, [str(row["concept"].values[j]) for j in order[:3]]
        )

        doc.heading("Model and concept bank")
        doc.key_values({**model_description(model), **in_sample})
        doc.key_values(prov or {"provenance": "the scores carry no backbone/bank attrs"})
        doc.heading("Reproducibility")
        doc.key_values({"case scores fingerprint": data_fingerprint(one), **package_versions()})
    return Path(path)


def _draw_image(ax: Any, image: Any, sid: str) -> None:
    ax.imshow(np.asarray(image))
    ax.set_axis_off()
    ax.set_title(sid, fontsize=8)


#: Classes drawn in the probability chart; the text lists every class.
MAX_PROBA_BARS = 10
#: Characters of a class name shown next to its bar.
MAX_LABEL_CHARS = 24


def _short(name: str, limit: int = MAX_LABEL_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def _draw_proba(
    ax: Any, classes: list[str], proba: np.ndarray, pred: str, label: str | None = None
) -> None:
    """One bar per class in class order; with more than :data:`MAX_PROBA_BARS` classes, the
    most probable ones by probability (the predicted and the true one always among them)."""
    order = (
        list(range(len(classes)))
        if len(classes) <= MAX_PROBA_BARS
        else [int(i) for i in np.argsort(-proba, kind="stable")]
    )
    keep = order[:MAX_PROBA_BARS]
    for name in (pred, label):
        if name in classes and classes.index(name) not in keep:
            keep[-1] = classes.index(name)
    keep = sorted(set(keep), key=order.index)
    shown = [classes[i] for i in keep]
    colors = ["#c0392b" if k == pred else "0.6" for k in shown]
    ax.barh(np.arange(len(keep)), proba[keep], color=colors)
    for i, p in enumerate(proba[keep]):
        ax.text(min(p + 0.02, 0.85), i, f"{p:.3f}", va="center", fontsize=8)
    ax.set_yticks(np.arange(len(keep)), [_short(k) for k in shown])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    title = "predicted probabilities"
    if len(keep) < len(classes):
        title += f" (top {len(keep)} of {len(classes)} classes)"
    ax.set_title(title, fontsize=9)


def _spatial_section(doc: Any, image: Any, maps: Any, sid: str, concepts: list[str]) -> None:
    if maps is None or image is None:
        return
    from conceptlens.plot._spatial import plot_concept_maps

    names = [c for c in concepts if c in set(map(str, maps["concept"].values))]
    if not names:
        return
    doc.heading("Where the top concepts are (patch similarity maps)")
    top = doc.row(2.2)
    from conceptlens.reports._pdf import MARGIN, PAGE

    width = (PAGE[0] - 2 * MARGIN) / (len(names) + 1)
    axes = [
        doc.axes_at(
            lambda ax: None, top, 2.2, width=width, left=i * width, pad_left=0.05, pad_bottom=0.1
        )
        for i in range(len(names) + 1)
    ]
    sample: Any = (
        sid if "sample" in maps.dims and sid in set(map(str, maps["sample"].values)) else 0
    )
    plot_concept_maps(np.asarray(image), maps, sample=sample, concepts=names, axes=axes)
