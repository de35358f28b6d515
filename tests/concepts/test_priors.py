"""Class priors that follow what a passage says, and KnoBo's yes/no route by a model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conceptlens.concepts import (
    CorpusIndex,
    LLMClient,
    Passage,
    llm_priors,
    load_bank,
    retrieve_concepts,
    text_priors,
)
from conceptlens.concepts._priors import class_aliases
from conceptlens.exceptions import ConfigError

DATA = Path(__file__).with_name("data") / "prior_polarity.jsonl"
CLASSES = ["melanoma", "nevus", "seborrheic_keratosis"]


def _load_set():
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def precision_coverage(rows):
    """Precision of assigned (non-zero) priors and coverage of the labelled ones."""
    correct = wrong = labelled = 0
    for r in rows:
        got = {c: e.prior for c, e in text_priors(r["text"], r["finding"], CLASSES).items()}
        for cls, gold in r["labels"].items():
            labelled += gold != 0
            pred = got.get(cls, 0)
            if pred:
                correct += pred == gold
                wrong += pred != gold
    return correct / max(correct + wrong, 1), correct / labelled, correct + wrong


def test_labelled_set_is_what_the_docs_say():
    rows = _load_set()
    assert len(rows) == 60 and len({r["text"] for r in rows}) >= 40
    assert sum(r["split"] == "heldout" for r in rows) == 30
    for r in rows:
        assert r["finding"].lower() in r["text"].lower(), r["id"]
        assert set(r["labels"]) == set(CLASSES)
    golds = [v for r in rows for v in r["labels"].values()]
    # negations and contrasts, not only positives
    assert golds.count(-1) >= 15 and golds.count(1) >= 30
    assert sum(sum(v != 0 for v in r["labels"].values()) >= 2 for r in rows) >= 12


@pytest.mark.parametrize(
    ("split", "min_coverage"), [("dev", 0.95), ("heldout", 0.85), ("all", 0.9)]
)
def test_precision_and_coverage_on_labelled_passages(split, min_coverage):
    rows = [r for r in _load_set() if split == "all" or r["split"] == split]
    precision, coverage, n = precision_coverage(rows)
    assert n >= 25
    assert precision >= 0.95
    assert coverage >= min_coverage


@pytest.mark.parametrize(
    ("text", "finding", "expected"),
    [
        (
            "An irregular border is unusual in a benign nevus and favours melanoma.",
            "irregular border",
            {"melanoma": 1, "nevus": -1},
        ),
        (
            "Regular globules favour a nevus and irregular streaks suggest melanoma.",
            "regular globules",
            {"nevus": 1},
        ),
        (
            "Regular globules favour a nevus and irregular streaks suggest melanoma.",
            "irregular streaks",
            {"melanoma": 1},
        ),
        ("Irregular streaks are not a sign of a nevus.", "irregular streaks", {}),
        ("Irregular streaks are not typical of a nevus.", "irregular streaks", {"nevus": -1}),
        ("Rosettes are seen in actinic keratosis.", "rosettes", {}),
        ("The veil reflects orthokeratosis.", "veil", {}),
        ("Milia-like cysts favour keratosis.", "milia-like cysts", {"seborrheic_keratosis": 1}),
        ("Dots are common in nevi. Melanoma is rare.", "dots", {"nevus": 1}),
        ("Dots are less common in melanoma than in nevi.", "dots", {"melanoma": -1, "nevus": 1}),
    ],
)
def test_rule_cases(text, finding, expected):
    got = text_priors(text, finding, CLASSES)
    assert {c: e.prior for c, e in got.items()} == expected
    for e in got.values():
        assert e.sentence in text and finding.lower() in e.sentence.lower()


def test_sentences_that_disagree_leave_the_class_unknown():
    text = "Dots are typical of melanoma. Dots are rare in melanoma."
    assert text_priors(text, "dots", CLASSES) == {}


def test_aliases():
    forms = class_aliases(CLASSES, {"seborrheic_keratosis": ["sk"]})
    assert "melanomas" in forms["melanoma"] and "naevi" in forms["nevus"]
    assert "sk" in forms["seborrheic_keratosis"]
    got = text_priors(
        "Cysts point to SK.", "cysts", CLASSES, aliases={"seborrheic_keratosis": ["sk"]}
    )
    assert got["seborrheic_keratosis"].prior == 1


# Eight contrastive passages, one finding each, stating the class it supports and the one
# it argues against (the check that found the bug): retrieval used to give +1 to both.
CONTRAST = [
    (
        "c1",
        "An irregular border is unusual in a benign nevus and favours melanoma.",
        "irregular_border",
        "melanoma",
        "nevus",
    ),
    (
        "c2",
        "A blue-white veil is rare in nevi and points to melanoma.",
        "blue_white_veil",
        "melanoma",
        "nevus",
    ),
    (
        "c3",
        "Irregular streaks suggest melanoma rather than a nevus.",
        "irregular_streaks",
        "melanoma",
        "nevus",
    ),
    (
        "c4",
        "Unlike melanoma, a nevus shows a regular pigment network.",
        "regular_pigment_network",
        "nevus",
        "melanoma",
    ),
    (
        "c5",
        "Regular globules are typical of a nevus and are uncommon in melanoma.",
        "regular_globules",
        "nevus",
        "melanoma",
    ),
    (
        "c6",
        "Milia-like cysts favour seborrheic keratosis over melanoma.",
        "milia_like_cysts",
        "seborrheic_keratosis",
        "melanoma",
    ),
    (
        "c7",
        "Comedo-like openings are a clue to seborrheic keratosis, unlike melanoma.",
        "comedo_like_openings",
        "seborrheic_keratosis",
        "melanoma",
    ),
    (
        "c8",
        "Atypical pigment network is absent in seborrheic keratosis and suggests melanoma.",
        "atypical_pigment_network",
        "melanoma",
        "seborrheic_keratosis",
    ),
]


def test_retrieved_priors_follow_contrastive_passages():
    index = CorpusIndex.build([Passage(d, f"{d}#p0", t) for d, t, *_ in CONTRAST])
    bank = retrieve_concepts(index, CLASSES, k=8)
    wrong = []
    for doc, text, name, pro, con in CONTRAST:
        c = bank[name]
        if c.classes.get(con) == 1:
            wrong.append(name)
        assert c.classes.get(pro) == 1, (name, dict(c.classes))
        why = c.provenance["priors"][pro]
        assert why["sentence"] == text and why["document"] == doc
    assert wrong == []
    # the argued-against class is -1 where the passage says so explicitly (c7's "unlike"
    # comes after a comma and attaches to the subject: left unknown, not guessed)
    assert sum(bank[n].classes.get(con) == -1 for _, _, n, _, con in CONTRAST) >= 6


def test_priors_option_validation():
    index = CorpusIndex.build([Passage("a", "a#p0", CONTRAST[0][1])])
    with pytest.raises(ConfigError, match="needs a language model"):
        retrieve_concepts(index, CLASSES, priors="llm")
    with pytest.raises(ConfigError, match="priors must be"):
        retrieve_concepts(index, CLASSES, priors="query")
    bank = retrieve_concepts(index, CLASSES, priors="none")
    assert all(not c.classes for c in bank.concepts)


@pytest.fixture
def chat_server_module():
    spec = importlib.util.spec_from_file_location(
        "_cl_chat_server", Path(__file__).with_name("_chat_server.py")
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_llm_priors_knobo_route(chat_server_module, tmp_path):
    mod = chat_server_module
    truth = {("blue-white veil", "melanoma"): "yes", ("blue-white veil", "nevus"): "no"}

    def respond(body):
        data = json.loads(mod.user_text(body).split("\n")[1])
        return {"answer": truth.get((data["finding"], data["diagnosis"]), "unsure")}

    bank = load_bank("synthderm").subset(names=["blue_white_veil", "milia_like_cysts"])
    with mod.ChatServer(respond) as server:
        llm = LLMClient(base_url=server.base_url, model="m", cache_dir=tmp_path)
        out = llm_priors(bank, llm, domain="dermoscopy")
        n_first = len(server.requests)
        again = llm_priors(bank, llm, domain="dermoscopy")  # cached: no new request
        n_second = len(server.requests)
    k = len(bank.classes)
    assert n_first == 2 * k and n_second == n_first and llm.n_cache_hits == 2 * k
    veil = out["blue_white_veil"]
    assert veil.classes.get("melanoma") == 1 and veil.classes.get("nevus") == -1
    pri = veil.provenance["priors"]
    assert pri["melanoma"]["answer"] == "yes" and pri["nevus"]["prior"] == -1
    assert len(pri["melanoma"]["request_hash"]) > 8 and pri["melanoma"]["model"] == "m"
    # "unsure" clears a prior the bank had
    assert "seborrheic_keratosis" not in out["milia_like_cysts"].classes
    assert bank["milia_like_cysts"].classes.get("seborrheic_keratosis") == 1
    assert again.to_dict() == out.to_dict()


def test_cli_retrieve_priors_from_llm(chat_server_module, tmp_path):
    from click.testing import CliRunner

    from conceptlens.cli import main

    mod = chat_server_module
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"id": d, "text": t}) for d, t, *_ in CONTRAST[:2]) + "\n"
    )

    def respond(body):
        data = json.loads(mod.user_text(body).split("\n")[1])
        return {"answer": "yes" if data["diagnosis"] == "melanoma" else "no"}

    out = tmp_path / "b.yaml"
    with mod.ChatServer(respond) as server:
        res = CliRunner().invoke(
            main,
            [
                "bank",
                "retrieve",
                "--corpus",
                str(corpus),
                "--classes",
                "melanoma,nevus",
                "--out",
                str(out),
                "--priors",
                "llm",
                "--base-url",
                server.base_url,
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
        )
        n = len(server.requests)
    assert res.exit_code == 0, res.output
    bank = load_bank(out)
    assert n == 2 * len(bank)  # extraction stays extractive; one question per pair
    for c in bank.concepts:
        assert c.classes == {"melanoma": 1, "nevus": -1}
        assert c.provenance["priors"]["nevus"]["answer"] == "no"
