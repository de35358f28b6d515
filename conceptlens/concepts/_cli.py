"""``conceptlens bank``: list, show, validate, generate, retrieve and filter concept banks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from conceptlens._cli_options import (
    CACHE_DIR_HELP,
    FiniteFloat,
    UserPath,
    cache_dir_option,
    echo_info,
    label_column_option,
    out_option,
    read_scores,
)
from conceptlens.exceptions import BankError

__all__ = ["bank"]


def _split(values: tuple[str, ...]) -> list[str]:
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    if not out:
        raise click.UsageError("give at least one class, e.g. --classes nevus,melanoma")
    return out


def _embed_fn(name: str, *, fallback: bool = False) -> Any:
    if name == "lexical":
        from conceptlens.concepts._filter import lexical_embed

        return lexical_embed
    if name == "minilm":
        from conceptlens.concepts._retrieve import minilm_embed

        return minilm_embed
    if fallback:  # plain MiniLM if the backbone's weights are missing (logged)
        from conceptlens.concepts._retrieve import default_embed

        return default_embed(name)
    from conceptlens.backbones import load_backbone  # heavy; only when asked

    backbone = load_backbone(name)
    return backbone.encode_text


def _llm(base_url: str | None, model: str | None, timeout: float, cache_dir: str | None) -> Any:
    from conceptlens.concepts._llm import LLMClient

    # --cache-dir is the conceptlens cache folder everywhere; LLM responses go to llm/ in it
    llm_cache = Path(cache_dir) / "llm" if cache_dir is not None else None
    return LLMClient(base_url=base_url, model=model, timeout=timeout, cache_dir=llm_cache)


@click.group(name="bank")
def bank() -> None:
    """Concept banks: list, show, validate, generate, retrieve, filter."""


@bank.command(name="list")
def list_cmd() -> None:
    """List the shipped banks."""
    from conceptlens.concepts._bank import list_banks, load_bank

    click.echo(f"{'name':<18} {'version':<8} {'classes':>7} {'concepts':>8}  domain / modality")
    for name in list_banks():
        b = load_bank(name)
        where = " / ".join(x for x in (b.domain, b.modality) if x)
        click.echo(f"{name:<18} {b.version:<8} {len(b.classes):>7} {len(b):>8}  {where}")


@bank.command(name="show")
@click.argument("name")
@click.option("--yaml", "as_yaml", is_flag=True, help="Print the whole bank as YAML.")
def show_cmd(name: str, as_yaml: bool) -> None:
    """Show a bank (shipped name or path): header and one line per concept."""
    from conceptlens._io import user_path
    from conceptlens.concepts._bank import list_banks, load_bank

    if user_path(name).is_dir():
        raise BankError(
            f"{name} is a folder; give a bank file (.yaml, .yml or .json) or a shipped bank "
            f"name ({', '.join(list_banks())})"
        )
    b = load_bank(name)
    if as_yaml:
        click.echo(b.to_yaml(), nl=False)
        return
    click.echo(f"{b.id} {b.version}  {b.name or ''}")
    click.echo(f"classes: {', '.join(b.classes)}")
    click.echo(f"concepts: {len(b)}  groups: {', '.join(sorted(set(b.groups)))}")
    click.echo(f"fingerprint: {b.fingerprint}")
    for c in b.concepts:
        cls = ",".join(c.positive_classes) or "-"
        src = c.provenance.get("kind", "?")
        cit = c.provenance.get("citation") or c.provenance.get("document") or ""
        cit = ",".join(cit) if isinstance(cit, list) else str(cit)
        click.echo(f"  {c.name:<34} {c.group:<12} {cls:<28} {src}:{cit}  {c.prompts[0]!r}")
    if b.citations:
        click.echo("citations:")
        for k, v in b.citations.items():
            click.echo(f"  [{k}] {v}")


@bank.command(name="validate")
@click.argument("paths", nargs=-1, required=True, type=UserPath(dir_okay=False))
def validate_cmd(paths: tuple[str, ...]) -> None:
    """Validate bank files or shipped banks by name; exit 1 if any fails.

    Each error names the file, concept and field.
    """
    from conceptlens.concepts._bank import _shipped_files, validate_bank_file
    from conceptlens.exceptions import ConceptLensError

    shipped = _shipped_files()
    failed = 0
    for p in paths:
        if not Path(p).exists() and p in shipped:  # a shipped bank's name, as `bank show`
            p = str(shipped[p])
        try:
            b = validate_bank_file(p)
        except ConceptLensError as exc:
            failed += 1
            click.echo(f"FAIL {exc}", err=True)
        else:
            click.echo(f"ok   {p}: {b.id} {b.version}, {len(b)} concepts, {b.fingerprint[:12]}")
    if failed:
        raise BankError(f"{failed} of {len(paths)} bank file(s) failed validation")


_llm_options = [
    click.option("--base-url", default=None, help="Chat-completions base URL ($OPENAI_BASE_URL)."),
    click.option("--model", default=None, help="Model name ($OPENAI_MODEL, default gpt-4o-mini)."),
    click.option(
        "--timeout",
        type=FiniteFloat(min=0, min_open=True),
        default=60.0,
        show_default=True,
        help="Seconds per request.",
    ),
    click.option(
        "--cache-dir",
        type=UserPath(file_okay=False),
        default=None,
        help=CACHE_DIR_HELP + " LLM responses are kept in llm/ inside it.",
    ),
]


def _with(options: list[Any]) -> Any:
    def deco(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


@bank.command(name="generate")
@click.option("--classes", "classes", multiple=True, required=True, help="Comma-separated.")
@click.option("--domain", required=True, help="E.g. dermatology.")
@click.option("--modality", default="", help="E.g. dermoscopy.")
@out_option("Bank file to write (.yaml or .json).", dir_okay=False)
@click.option("--families", default="features,differences,questions,priors", show_default=True)
@click.option(
    "--n",
    "n_per_prompt",
    type=click.IntRange(1, 50),
    default=10,
    show_default=True,
    help="Items per prompt.",
)
@click.option("--id", "bank_id", default=None, help="Bank id (default: <domain>_llm).")
@_with(_llm_options)
def generate_cmd(
    classes: tuple[str, ...],
    domain: str,
    modality: str,
    out: str,
    families: str,
    n_per_prompt: int,
    bank_id: str | None,
    base_url: str | None,
    model: str | None,
    timeout: float,
    cache_dir: str | None,
) -> None:
    """Generate a bank with an OpenAI-compatible model (asks the network)."""
    from conceptlens.concepts._generate import generate_bank

    llm = _llm(base_url, model, timeout, cache_dir)
    result = generate_bank(
        _split(classes),
        domain,
        llm=llm,
        families=_split((families,)),
        modality=modality,
        n_per_prompt=n_per_prompt,
        bank_id=bank_id,
        return_rejected=True,
    )
    b, rejected = result  # type: ignore[misc]
    b.save(out)
    echo_info(f"wrote {out}")
    click.echo(  # the result, shown under --quiet too
        f"{len(b)} concepts, {len(rejected)} rejected; "
        f"{llm.n_requests} requests, {llm.n_cache_hits} cache hits"
    )
    for r in rejected:
        click.echo(f"  rejected {r.text!r}: {r.reason}")


@bank.command(name="retrieve")
@click.option(
    "--corpus",
    "corpora",
    multiple=True,
    type=UserPath(exists=True),
    help="Corpus file/folder (.txt .jsonl .xml).",
)
@click.option(
    "--index",
    "index_dir",
    type=UserPath(file_okay=False),
    default=None,
    help="Index folder: loaded if it exists, else built from --corpus and saved there.",
)
@click.option("--classes", "classes", multiple=True, required=True, help="Comma-separated.")
@click.option("--domain", default="", help="Stored in the bank (and told to the LLM).")
@click.option("--modality", default="", help="Stored in the bank (and told to the LLM).")
@out_option("Bank file to write (.yaml or .json).", dir_okay=False)
@click.option(
    "--k", type=click.IntRange(min=1), default=8, show_default=True, help="Passages per class."
)
@click.option("--method", type=click.Choice(["bm25", "dense", "hybrid"]), default="bm25")
@click.option(
    "--embed",
    default="synthderm-lit",
    show_default=True,
    help="Backbone whose text tower embeds passages (dense/hybrid), 'minilm' or 'lexical'.",
)
@click.option("--use-llm", is_flag=True, help="Extract concepts with the LLM (else extractive).")
@click.option(
    "--priors",
    type=click.Choice(["text", "llm", "none"]),
    default="text",
    show_default=True,
    help="Class priors from what the passages say, from yes/no questions to the LLM "
    "(KnoBo), or none.",
)
@_with(_llm_options)
def retrieve_cmd(
    corpora: tuple[str, ...],
    index_dir: str | None,
    classes: tuple[str, ...],
    domain: str,
    modality: str,
    out: str,
    k: int,
    method: str,
    embed: str,
    use_llm: bool,
    priors: str,
    base_url: str | None,
    model: str | None,
    timeout: float,
    cache_dir: str | None,
) -> None:
    """Build a bank from passages retrieved per class (BM25 / dense / hybrid)."""
    from conceptlens.concepts._retrieve import CorpusIndex, read_corpus, retrieve_concepts

    if index_dir and (Path(index_dir) / "index.json").is_file() and not corpora:
        index = CorpusIndex.load(index_dir)
    else:
        if not corpora:
            raise click.UsageError("give --corpus FILE (or --index DIR of a saved index)")
        passages = [p for c in corpora for p in read_corpus(c)]
        index = CorpusIndex.build(passages)
        if index_dir:
            index.save(index_dir)
    need_llm = use_llm or priors == "llm"
    llm = _llm(base_url, model, timeout, cache_dir) if need_llm else None
    result = retrieve_concepts(
        index,
        _split(classes),
        domain=domain,
        modality=modality,
        k=k,
        method=method,
        embed=_embed_fn(embed, fallback=True) if method != "bm25" else None,
        llm=llm if use_llm else None,
        priors="none" if priors == "llm" else priors,
        return_rejected=True,
    )
    b, rejected = result  # type: ignore[misc]
    if priors == "llm":
        from conceptlens.concepts._priors import llm_priors

        b = llm_priors(b, llm, domain=domain)
    b.save(out)
    n_prior = sum(any(c.classes.values()) for c in b.concepts)
    echo_info(
        f"wrote {out}: {len(b)} concepts from {len(index)} passages, "
        f"{len(rejected)} candidates rejected; {n_prior} with class priors ({priors})"
    )


@bank.command(name="filter")
@click.argument("bank_ref")
@out_option("Bank file to write (.yaml or .json).", dir_okay=False)
@click.option(
    "--max-words", type=click.IntRange(min=1), default=None, help="Drop prompts longer than this."
)
@click.option(
    "--class-ratio",
    type=FiniteFloat(0, 1),
    default=None,
    help="Drop concepts whose prompt resembles a class name above this ratio.",
)
@click.option(
    "--duplicates",
    "dup",
    type=FiniteFloat(-1, 1),
    default=None,
    help="Drop near-duplicates above this embedding cosine.",
)
@click.option(
    "--embed",
    default="lexical",
    show_default=True,
    help="'lexical', 'minilm' or a backbone name whose text tower embeds concepts.",
)
@click.option(
    "--scores",
    default=None,
    type=UserPath(exists=True),
    help="concept_score file (.nc or .zarr) on training images (for --cutoff / --select).",
)
@click.option(
    "--baseline",
    default=None,
    type=UserPath(exists=True),
    help="netCDF scores of the random-words bank (bank random-words) on the same images: "
    "keep concepts whose top-k lift beats the random words' (calibrated to the backbone).",
)
@click.option(
    "--quantile",
    type=FiniteFloat(0, 1),
    default=0.9,
    show_default=True,
    help="Quantile of the random-word lifts to beat (with --baseline).",
)
@click.option(
    "--margin",
    type=FiniteFloat(),
    default=0.0,
    show_default=True,
    help="Added to that quantile (score units).",
)
@click.option(
    "--cutoff",
    type=FiniteFloat(),
    default=None,
    help="Absolute min mean of top-k scores instead of --baseline (backbone-specific).",
)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--select",
    "select_k",
    type=click.IntRange(min=1),
    default=None,
    help="Keep K concepts per class.",
)
@click.option(
    "--report",
    default=None,
    type=UserPath(dir_okay=False),
    help="Write what was removed and why as CSV.",
)
def filter_cmd(
    bank_ref: str,
    out: str,
    max_words: int | None,
    class_ratio: float | None,
    dup: float | None,
    embed: str,
    scores: str | None,
    baseline: str | None,
    quantile: float,
    margin: float,
    cutoff: float | None,
    top_k: int,
    select_k: int | None,
    report: str | None,
) -> None:
    """Filter a bank and optionally select K concepts per class."""
    from conceptlens._io import atomic_write_text
    from conceptlens.concepts._bank import load_bank
    from conceptlens.concepts._filter import filter_bank, select_concepts

    b = load_bank(bank_ref)
    score_arr = None
    if scores:
        score_arr = read_scores(scores)
    base_arr = None
    if baseline:
        base_arr = read_scores(baseline, option="--baseline")
    elif score_arr is not None and cutoff is None:
        click.echo(
            "note: scorability not checked; pass --baseline (scores of `conceptlens bank "
            "random-words` on the same images) or --cutoff"
        )
    fn = _embed_fn(embed)
    kept, rep = filter_bank(
        b,
        max_words=max_words,
        class_ratio=class_ratio,
        duplicate_cosine=dup,
        embed=fn,
        concept_score=score_arr,
        baseline=base_arr,
        quantile=quantile,
        margin=margin,
        cutoff=cutoff,
        top_k=top_k,
    )
    for r in rep.records:
        click.echo(f"  removed {r['concept']:<34} [{r['filter']}] {r['reason']}")
    if select_k is not None:
        kept, _table = select_concepts(kept, select_k, embed=fn, concept_score=score_arr)
        click.echo(f"selected {len(kept)} concepts ({select_k} per class)")
    kept.save(out)
    if report:
        atomic_write_text(report, rep.to_frame().to_csv(index=False))
    echo_info(f"wrote {out}: kept {len(kept)} of {len(b)} concepts ({rep.summary()})")


@bank.command(name="random-words")
@click.argument("bank_ref")
@click.option("--out", required=True, type=UserPath(dir_okay=False), help="Bank file to write.")
@click.option("--n", "n_concepts", default=64, show_default=True, help="Random concepts.")
@click.option("--words", "n_words", default=2, show_default=True, help="Words per prompt.")
@click.option("--seed", default=0, show_default=True)
def random_words_cmd(bank_ref: str, out: str, n_concepts: int, n_words: int, seed: int) -> None:
    """Write a random-words bank matched to BANK_REF (its templates, reference prompts).

    Score it on the same images as BANK_REF (`conceptlens score`) and pass the scores to
    `bank filter --baseline` or `bank quality`.
    """
    from conceptlens.concepts._bank import load_bank
    from conceptlens.concepts._baseline import random_words_bank

    rnd = random_words_bank(load_bank(bank_ref), n_concepts, n_words=n_words, seed=seed)
    rnd.save(out)
    echo_info(f"wrote {out}: {len(rnd)} random-word concepts matched to {bank_ref}")


@bank.command(name="quality")
@click.argument("bank_ref")
@click.option(
    "--data",
    required=True,
    type=UserPath(exists=True, dir_okay=False),
    help="Manifest CSV/Parquet; 0/1 columns named like concepts are their annotations.",
)
@click.option("--backbone", default="synthderm-lit", show_default=True)
@click.option("--out", required=True, type=UserPath(dir_okay=False), help="Report (.nc).")
@click.option("--csv", "csv_out", default=None, type=UserPath(dir_okay=False))
@click.option(
    "--annotations",
    default=None,
    type=UserPath(exists=True, dir_okay=False),
    help="CSV with one 0/1 column per concept, rows in manifest order (else manifest columns).",
)
@click.option("--mode", type=click.Choice(["cosine", "relative", "presence"]), default="cosine")
@cache_dir_option
@label_column_option
@click.option("--seed", default=0, show_default=True, help="Random words and the split.")
def quality_cmd(
    bank_ref: str,
    data: str,
    backbone: str,
    out: str,
    csv_out: str | None,
    annotations: str | None,
    mode: str,
    cache_dir: str | None,
    label_column: str,
    seed: int,
) -> None:
    """Per-concept quality report of BANK_REF on a dataset (see docs/concept_banks.md)."""
    import pandas as pd

    from conceptlens._io import atomic_path, atomic_write_text, cache_root
    from conceptlens.concepts._quality import bank_quality
    from conceptlens.data import load_manifest

    if Path(out).suffix.lower() != ".nc":
        raise click.BadParameter(f"{out}: use a .nc (netCDF) suffix", param_hint="--out")
    dataset = load_manifest(data, label_column=label_column)
    ann = pd.read_csv(annotations) if annotations else None
    report = bank_quality(
        bank_ref, backbone, dataset, ann, mode=mode, cache=cache_dir or cache_root(), seed=seed
    )
    with atomic_path(Path(out)) as tmp:
        report.to_netcdf(tmp)
    table = report.to_dataframe()
    if csv_out:
        atomic_write_text(csv_out, table.to_csv())
    cols = ["auroc", "margin", "text_redundancy", "score_redundancy", "drop_one_loss"]
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        click.echo(table[[*cols, "suggestion"]].round(3).to_string())
    # "keep", "reject: <reason>", "merge with <concept>" -> keep / reject / merge
    counts = table["suggestion"].str.split(r"[: ]", regex=True).str[0].value_counts().to_dict()
    click.echo(
        f"{len(table)} concepts; " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    )
    echo_info(f"wrote {out}")
