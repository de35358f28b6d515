"""Audit report: a study's findings in words, tables with intervals, figures, provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from conceptlens.exceptions import DataError
from conceptlens.plot._common import fmt_ci
from conceptlens.reports._common import (
    data_fingerprint,
    model_description,
    now,
    ordinal,
    package_versions,
    score_provenance,
)
from conceptlens.reports._pdf import open_report

__all__ = ["audit_report", "audit_summary"]

_METRIC_WORDS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "auroc": "macro AUROC",
    "ece": "ECE",
}


def _check_audit(audit: Any) -> xr.Dataset:
    if not isinstance(audit, xr.Dataset) or "metrics" not in audit:
        raise DataError(
            "audit must be the xr.Dataset of conceptlens.studies.audit "
            "(load a saved one with conceptlens.studies.load_audit)."
        )
    return audit


def _est(m: xr.DataArray, **sel: Any) -> tuple[float, float, float]:
    v = m.sel(sel)
    return tuple(float(v.sel(stat=s)) for s in ("estimate", "ci_low", "ci_high"))  # type: ignore[return-value]


def _splits(audit: xr.Dataset, reference: str | None) -> tuple[str, list[str]]:
    splits = [str(s) for s in audit["split"].values]
    ref = reference or str(audit.attrs.get("reference_split") or splits[0])
    if ref not in splits:
        raise DataError(f"reference split {ref!r} is not in the audit's splits {splits}.")
    return ref, [s for s in splits if s != ref]


def _weight_sentence(
    model: Any,
    shortcuts: pd.DataFrame | None,
    groups: Mapping[str, str],
    artifact_groups: Sequence[str],
) -> str | None:
    from conceptlens.explain import standardized_weights

    w = standardized_weights(model)
    if shortcuts is not None and len(shortcuts):
        flagged = shortcuts[shortcuts["suspect"]] if "suspect" in shortcuts else shortcuts
        row = (flagged if len(flagged) else shortcuts).iloc[0]
        concept, cls = str(row["concept"]), str(row["class"])
    else:
        # the largest weight of any class on an artifact concept, else the largest weight
        flat = [
            (abs(float(w.sel({"class": k, "concept": c}))), str(c), str(k))
            for k in w["class"].values
            for c in w["concept"].values
        ]
        art = [t for t in flat if groups.get(t[1]) in artifact_groups]
        if not flat:
            return None
        _, concept, cls = max(art or flat)
    row_w = w.sel({"class": cls})
    value = float(row_w.sel(concept=concept))
    rank = int((np.abs(row_w.values) > abs(value)).sum()) + 1
    group = groups.get(concept, "")
    kind = (
        f"an {group} concept"
        if group and group[0] in "aeiou"
        else (f"a {group} concept" if group else "a concept")
    )
    if value == 0:
        return f"{concept} ({kind}) has no weight for {cls} in the concept head."
    return (
        f"{concept}, {kind}, carries {cls}'s {ordinal(rank)} weight "
        f"({value:+.2f} logit per SD of its score)"
    )


def audit_summary(
    audit: xr.Dataset,
    *,
    model: Any = None,
    model_name: str | None = None,
    shortcuts: pd.DataFrame | None = None,
    masking: Mapping[str, Any] | None = None,
    groups: Mapping[str, str] | None = None,
    reference: str | None = None,
    metric: str = "accuracy",
) -> list[str]:
    """The findings of an audit in sentences, generated from its numbers.

    Parameters
    ----------
    audit : xr.Dataset
        :func:`conceptlens.studies.audit` output.
    model : fitted concept head, optional
        Its weights per SD name the concept the head leans on most.
    model_name : str, optional
        The audit's name for that head (default the first model).
    shortcuts : pandas.DataFrame, optional
        :func:`conceptlens.studies.find_shortcuts` output.
    masking : mapping, optional
        Test-time masking results: ``split``, ``accuracy_before``, ``accuracy_after`` and
        ``concepts`` (the masked ones).
    groups : mapping concept -> group, optional
        Concept groups (default from ``shortcuts``).
    reference : str, optional
        The in-domain split (default the audit's ``reference_split``).
    metric : str, default="accuracy"
        The metric the sentences quote.

    Returns
    -------
    list of str
        One sentence per finding.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from conceptlens.reports import audit_summary
    >>> v = np.array([[0.88, 0.85, 0.91], [0.66, 0.6, 0.7]]).reshape(1, 2, 1, 1, 3)
    >>> m = xr.DataArray(v, dims=("model", "split", "group", "metric", "stat"),
    ...     coords={"model": ["cbm"], "split": ["site_a", "site_c"], "group": ["all"],
    ...             "metric": ["accuracy"], "stat": ["estimate", "ci_low", "ci_high"]})
    >>> audit_summary(xr.Dataset({"metrics": m}, attrs={"reference_split": "site_a"}))[0]
    'cbm: accuracy falls from 0.88 [0.85, 0.91] at site_a to 0.66 [0.60, 0.70] at site_c.'
    """
    from conceptlens.studies import ARTIFACT_GROUPS

    audit = _check_audit(audit)
    m = audit["metrics"]
    ref, others = _splits(audit, reference)
    models = [str(v) for v in m["model"].values]
    name = model_name or models[0]
    if groups is None:
        groups = (
            {
                str(c): str(g)
                for c, g in zip(shortcuts["concept"], shortcuts["concept_group"], strict=True)
            }
            if shortcuts is not None and "concept_group" in shortcuts
            else {}
        )
    out: list[str] = []
    word = _METRIC_WORDS.get(metric, metric)
    lead = None
    if model is not None:
        lead = _weight_sentence(model, shortcuts, groups, ARTIFACT_GROUPS)
    for i, mod in enumerate(models):
        if not others:
            e = _est(m, model=mod, split=ref, group="all", metric=metric)
            out.append(f"{mod}: {word} {fmt_ci(*e, digits=2)} at {ref}.")
            continue
        a = _est(m, model=mod, split=ref, group="all", metric=metric)
        worst = min(
            others, key=lambda s: _est(m, model=mod, split=s, group="all", metric=metric)[0]
        )
        b = _est(m, model=mod, split=worst, group="all", metric=metric)
        verb = "falls" if b[0] < a[0] else "rises" if b[0] > a[0] else "stays"
        text = (
            f"{word} {verb} from {fmt_ci(*a, digits=2)} at {ref} to "
            f"{fmt_ci(*b, digits=2)} at {worst}"
        )
        if lead is not None and mod == name and i == models.index(name):
            text = f"{lead}, and {text}"
            out.append(text[0].upper() + text[1:] if not text[0].islower() else text + ".")
            if not out[-1].endswith("."):
                out[-1] += "."
            lead = None
        else:
            out.append(f"{mod}: {text}.")
        if "gap" in audit and metric in audit["gap"]["metric"].values:
            g = _est(audit["gap"], model=mod, split=worst, group="all", metric=metric)
            if np.isfinite(g[0]) and np.isfinite(g[1]):
                sig = (
                    "an interval that excludes zero"
                    if g[1] > 0 or g[2] < 0
                    else "an interval that includes zero"
                )
                out[-1] = out[-1][:-1] + f" (gap {fmt_ci(*g, digits=2)}, {sig})."
    if lead is not None:
        out.insert(0, lead + ".")
    # worst groups
    worst_groups = [str(g) for g in m["group"].values if str(g).startswith("worst:")]
    for wg in worst_groups:
        for split in others or [ref]:
            e = _est(m, model=name, split=split, group=wg, metric=metric)
            which = (
                str(
                    audit["worst_group"]
                    .sel(model=name, split=split, group=wg, metric=metric)
                    .values
                )
                if "worst_group" in audit
                else ""
            )
            if np.isfinite(e[0]) and which:
                out.append(
                    f"At {split}, the worst {wg[6:]} group for {name} ({which}) has "
                    f"{word} {fmt_ci(*e, digits=2)}."
                )
    # paired comparisons
    if "paired" in audit and audit.sizes.get("pair", 0):
        for pair in audit["pair"].values:
            for split in [ref, *others]:
                e = _est(audit["paired"], pair=pair, split=split, group="all", metric="auroc")
                p = float(
                    audit["paired_p_value"].sel(
                        pair=pair, split=split, group="all", metric="auroc"
                    )
                )
                if np.isfinite(e[0]):
                    n_boot = int(audit.attrs.get("n_boot", 0) or 0)
                    ptext = f"p < {1 / n_boot:.2g}" if p == 0 and n_boot else f"p = {p:.3g}"
                    out.append(
                        f"{pair}, macro AUROC at {split}: {fmt_ci(*e, digits=3)} "
                        f"(bootstrap {ptext})."
                    )
    # shortcuts
    if shortcuts is not None:
        flagged = shortcuts[shortcuts["suspect"]] if "suspect" in shortcuts else shortcuts.iloc[:0]
        if len(flagged):
            items = [
                f"{r.concept} -> {r['class']} (suspicion {r.suspicion:.3f})"
                for _, r in flagged.head(4).iterrows()
            ]
            n_art = int(flagged["artifact"].sum()) if "artifact" in flagged else 0
            out.append(
                f"The shortcut finder flags {len(flagged)} (concept, class) "
                f"pair{'s' if len(flagged) != 1 else ''}: {'; '.join(items)}; "
                f"{n_art} of them on artifact concepts."
            )
        else:
            out.append("The shortcut finder flags no (concept, class) pair.")
    if masking:
        cons = ", ".join(masking.get("concepts", [])) or "no concept"
        out.append(
            f"Test-time masking at {masking.get('split', 'the target split')} masks "
            f"{cons}; accuracy goes from {masking['accuracy_before']:.2f} to "
            f"{masking['accuracy_after']:.2f}."
        )
    return out


def audit_report(
    path: str | Path,
    audit: xr.Dataset,
    *,
    model: Any = None,
    model_name: str | None = None,
    scores: xr.DataArray | None = None,
    shortcuts: pd.DataFrame | None = None,
    masking: Mapping[str, Any] | None = None,
    intervention_curves: Any = None,
    masking_grid: xr.Dataset | None = None,
    images: Any = None,
    description: str | None = None,
    seeds: Mapping[str, Any] | None = None,
    title: str = "Concept-model audit",
) -> Path:
    """Write an audit PDF: findings in words, data, backbone and bank, metric tables
    with intervals, shortcut findings, masking results, figures and reproducibility.

    Sections whose input is not given are left out.

    Parameters
    ----------
    path : path
        The PDF to write (atomically).
    audit : xr.Dataset
        :func:`conceptlens.studies.audit` output.
    model : fitted concept head, optional
        Head weights figure and the weight named in the summary.
    model_name : str, optional
        The audit's name for ``model`` (default its first model).
    scores : xr.DataArray (sample, concept), optional
        The audited scores: data fingerprint and the score distributions of the top
        suspects per site.
    shortcuts : pandas.DataFrame, optional
        :func:`conceptlens.studies.find_shortcuts` output.
    masking : mapping, optional
        ``split``, ``accuracy_before``, ``accuracy_after``, ``concepts`` and optionally
        ``report`` (``TestTimeMasking.report()``).
    intervention_curves : xr.Dataset or mapping name -> xr.Dataset, optional
        :func:`conceptlens.masking.intervention_curve` output(s).
    masking_grid : xr.Dataset, optional
        :func:`conceptlens.studies.masking_study` output.
    images : SynthDerm batch, optional
        A few example images (``SynthDerm(...).generate(n)``) for a montage.
    description : str, optional
        The data in words (source, preset, sites).
    seeds : mapping, optional
        Seeds beyond the audit's bootstrap seed (data, split, head).
    title : str

    Returns
    -------
    pathlib.Path
    """
    from conceptlens import plot

    audit = _check_audit(audit)
    ref, _others = _splits(audit, None)
    sentences = audit_summary(
        audit,
        model=model,
        model_name=model_name,
        shortcuts=shortcuts,
        masking=masking,
        groups=_groups(scores, shortcuts),
    )
    prov = score_provenance(audit, scores if scores is not None else {})
    with open_report(
        path,
        title=title,
        subject="conceptlens audit report",
        keywords=["concept bottleneck", "audit", "shortcuts"],
    ) as doc:
        doc.title(
            title,
            f"generated {now()} by conceptlens; "
            f"{audit.attrs.get('n_boot', '?')} bootstrap replicates, "
            f"{round(100 * float(audit.attrs.get('ci', 0.95)))}% intervals",
        )
        doc.heading("Summary")
        for s in sentences:
            doc.paragraph(s)

        doc.heading("Data")
        if description:
            doc.paragraph(description)
        _data_table(doc, audit)
        if images is not None:
            doc.plot(
                lambda ax: plot.synthderm_montage(images, n=8, ncols=4, max_concepts=2, ax=ax),
                height=3.6,
                pad_left=0.0,
                pad_bottom=0.1,
            )

        doc.heading("Backbone and concept bank")
        doc.key_values(prov or {"provenance": "the audit carries no backbone/bank attrs"})
        if model is not None:
            doc.key_values(model_description(model))
            doc.plot(lambda ax: plot.head_weights(model, k=12, ax=ax), height=4.2)

        doc.new_page()
        doc.heading("Metrics (estimate [confidence interval])")
        _metric_tables(doc, audit)
        doc.plot(
            lambda ax: plot.metric_forest(audit, "auroc", ax=ax),
            height=0.3 * audit.sizes["model"] * audit.sizes["split"] + 1.2,
        )
        doc.plot(
            lambda ax: plot.metric_forest(audit, "accuracy", ax=ax),
            height=0.3 * audit.sizes["model"] * audit.sizes["split"] + 1.2,
        )

        if shortcuts is not None:
            doc.heading("Shortcut findings")
            _shortcut_table(doc, shortcuts)
            top = list(dict.fromkeys(shortcuts["concept"].astype(str)))[:3]
            if scores is not None and top and "site" in scores.coords:
                _suspect_scores(doc, scores, top[:2])
        if masking or intervention_curves is not None or masking_grid is not None:
            doc.heading("Masking and interventions")
            if masking:
                _masking_section(doc, masking)
            if intervention_curves is not None:
                doc.plot(
                    lambda ax: plot.intervention_curves(intervention_curves, ax=ax), height=3.2
                )
            if masking_grid is not None:
                grid = masking_grid
                for mod in grid["model"].values:

                    def draw_grid(ax: Any, mod: str = str(mod)) -> Any:
                        return plot.masking_grid(grid, model=mod, ax=ax)

                    doc.plot(draw_grid, height=3.2)

        doc.heading("Reproducibility")
        rep = {
            "bootstrap seed": audit.attrs.get("seed", ""),
            "bootstrap replicates": audit.attrs.get("n_boot", ""),
            "interval": audit.attrs.get("ci", ""),
            "reference split": ref,
            **{f"seed ({k})": v for k, v in (seeds or {}).items()},
        }
        if scores is not None:
            rep["data fingerprint (scores)"] = data_fingerprint(scores)
        for k in ("bank_fingerprint", "backbone_fingerprint", "template_hash"):
            if k in prov:
                rep[k.replace("_", " ")] = prov[k]
        versions = {
            f"version {k[8:]}": v for k, v in audit.attrs.items() if k.startswith("version_")
        }
        rep.update(versions or {f"version {k}": v for k, v in package_versions().items()})
        doc.key_values(rep)
    return Path(path)


def _suspect_scores(doc: Any, scores: xr.DataArray, concepts: list[str]) -> None:
    """The suspects' scores per class, one small plot per site (the link that shifts)."""
    from conceptlens import plot

    if "label" not in scores.coords:
        return
    sites = sorted({str(s) for s in scores["site"].values})[:3]
    doc.paragraph(
        "Scores of the top suspects per class at each site: a shortcut's link to the class "
        "changes from site to site.",
        size=7.5,
    )
    top = doc.row(2.9)
    width = (8.27 - 1.2) / len(sites)
    for i, site in enumerate(sites):
        sub = scores[np.asarray(scores["site"].values).astype(str) == site]

        def draw(ax: Any, sub: Any = sub, site: str = site) -> None:
            plot.concept_distributions(sub, concepts, by="label", ax=ax)
            ax.set_title(f"{site}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.set_ylabel("score" if site == sites[0] else "", fontsize=7)
            if ax.get_legend() is not None and site != sites[0]:
                ax.get_legend().remove()
            elif ax.get_legend() is not None:
                ax.legend(fontsize=6, title="class", title_fontsize=6)

        doc.axes_at(draw, top, 2.9, width=width, left=i * width, pad_left=0.5, pad_bottom=0.7)


def _groups(scores: Any, shortcuts: Any) -> dict[str, str]:
    if scores is not None and "concept_group" in getattr(scores, "coords", {}):
        return {
            str(c): str(g)
            for c, g in zip(scores["concept"].values, scores["concept_group"].values, strict=True)
        }
    if shortcuts is not None and "concept_group" in shortcuts:
        return dict(
            zip(
                shortcuts["concept"].astype(str),
                shortcuts["concept_group"].astype(str),
                strict=True,
            )
        )
    return {}


def _data_table(doc: Any, audit: xr.Dataset) -> None:
    if "n_class_cases" not in audit:
        return
    n = audit["n_class_cases"].sel(group="all")
    classes = [str(c) for c in n["class"].values]
    rows = [
        [str(s), int(audit["n_cases"].sel(split=s, group="all"))]
        + [int(n.sel({"split": s, "class": c})) for c in classes]
        for s in n["split"].values
    ]
    doc.table(["split", "cases", *classes], rows)
    cols = (
        sorted({str(c) for c in audit["group_column"].values if str(c)})
        if "group_column" in audit.coords
        else []
    )
    if cols:
        doc.paragraph("Groups audited within each split: " + ", ".join(cols) + ".")


def _metric_tables(doc: Any, audit: xr.Dataset) -> None:
    m = audit["metrics"]
    metrics = [str(x) for x in m["metric"].values]
    groups = ["all"] + [str(g) for g in m["group"].values if str(g).startswith("worst:")]
    for group in groups:
        rows = []
        for mod in m["model"].values:
            for split in m["split"].values:
                rows.append(
                    [str(mod), str(split)]
                    + [
                        fmt_ci(*_est(m, model=mod, split=split, group=group, metric=x))
                        for x in metrics
                    ]
                )
        doc.paragraph(f"group: {group}", size=8)
        doc.table(["model", "split", *[_METRIC_WORDS.get(x, x) for x in metrics]], rows, size=6.8)
    if "gap" in audit:
        ref = audit.attrs.get("reference_split", "")
        rows = [
            [str(mod), str(split)]
            + [
                fmt_ci(*_est(audit["gap"], model=mod, split=split, group="all", metric=x))
                for x in metrics
            ]
            for mod in m["model"].values
            for split in m["split"].values
            if str(split) != ref
        ]
        if rows:
            doc.paragraph(f"gap: {ref} minus each split (group all)", size=8)
            doc.table(
                ["model", "split", *[_METRIC_WORDS.get(x, x) for x in metrics]], rows, size=6.8
            )
    if "delong" in audit and audit.sizes.get("pair", 0):
        rows = []
        for pair in audit["pair"].values:
            for split in audit["split"].values:
                for cls in audit["class"].values:
                    d = audit["delong"].sel(pair=pair, split=split, group="all", **{"class": cls})
                    v = {str(k): float(d.sel(delong_stat=k)) for k in d["delong_stat"].values}
                    rows.append(
                        [
                            str(pair),
                            str(split),
                            str(cls),
                            f"{v['auroc_a']:.3f}",
                            f"{v['auroc_b']:.3f}",
                            f"{v['z']:+.2f}",
                            f"{v['p_value']:.3g}",
                        ]
                    )
        doc.paragraph("DeLong test per class (one-vs-rest), group all", size=8)
        doc.table(["pair", "split", "class", "AUROC a", "AUROC b", "z", "p"], rows, size=6.8)


def _shortcut_table(doc: Any, shortcuts: pd.DataFrame, n: int = 10) -> None:
    cols = ["concept", "class", "concept_group", "reliance", "shift", "suspicion", "suspect"]
    have = [c for c in cols if c in shortcuts]
    rows = []
    for _, r in shortcuts.head(n).iterrows():
        rows.append([f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in have])
    doc.table(have, rows, size=6.8)
    doc.paragraph(
        "reliance: mean |contribution| of the concept to the class logit; shift: change of the "
        "concept's link to the class (or of its prevalence) across sites; suspicion = reliance x "
        "shift; suspect: the shift is significant (Bonferroni) and the reliance is at least 10% "
        "of the class's largest.",
        size=7.5,
    )


def _masking_section(doc: Any, masking: Mapping[str, Any]) -> None:
    doc.paragraph(
        f"Test-time concept masking at {masking.get('split', 'the target split')}: accuracy "
        f"{masking['accuracy_before']:.3f} before, {masking['accuracy_after']:.3f} after."
    )
    rep = masking.get("report")
    if rep is not None and len(rep):
        cols = [c for c in ("concept", "action", "scale", "reason") if c in rep]
        rows = [
            [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
            for _, r in rep.iterrows()
        ]
        doc.table(cols, rows, size=6.8)
