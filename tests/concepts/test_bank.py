"""Concept bank format: validation, load/save round trips, subset, merge, shipped banks."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conceptlens.concepts import ConceptBank, list_banks, load_bank, validate_bank_file
from conceptlens.concepts._bank import shipped_bank_dirs
from conceptlens.exceptions import BankError, ConfigError, MissingFileError, UnknownNameError

MINIMAL = {
    "schema_version": 1,
    "id": "toy",
    "version": "1.0.0",
    "classes": ["nevus", "melanoma", "seborrheic_keratosis"],
    "citations": {"argenziano1998": "Argenziano G et al. Arch Dermatol 1998;134:1563-70."},
    "concepts": [
        {
            "name": "blue_white_veil",
            "prompts": ["blue-white veil", "a blue-white veil over the lesion"],
            "group": "colour",
            "question": "Is there a blue-white veil?",
            "classes": {"melanoma": 1, "nevus": -1, "seborrheic_keratosis": 0},
            "provenance": {"kind": "curated", "citation": "argenziano1998"},
        },
        {
            "name": "milia_like_cysts",
            "prompts": ["milia-like cysts"],
            "group": "structure",
            # a concept may belong to several classes
            "classes": {"seborrheic_keratosis": 1, "nevus": 1},
            "provenance": {
                "kind": "llm",
                "model": "m",
                "prompt_hash": "abc",
                "date": "2026-01-01",
            },
        },
        {
            "name": "ruler",
            "prompts": ["ruler markings"],
            "group": "artifact",
            "provenance": {
                "kind": "retrieved",
                "document": "PMID:1",
                "passage": "rulers...",
                "score": 3.5,
            },
        },
    ],
}


def _write(tmp_path, data, name="bank.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@pytest.fixture
def bank() -> ConceptBank:
    return ConceptBank.from_dict(copy.deepcopy(MINIMAL))


def test_every_shipped_bank_validates_and_has_citations():
    names = list_banks()
    assert {"dermoscopy", "chest_xray", "histopathology", "retinal_fundus", "blood_cell"} <= set(
        names
    )
    for name in names:
        b = load_bank(name)
        assert len(b) >= 10 and b.reference_prompts, name
        assert b.citations, f"{name} has no citations"
        used = set()
        for c in b.concepts:
            cit = c.provenance.get("citation")
            used.update([cit] if isinstance(cit, str) else cit or [])
        assert used == set(b.citations), f"{name}: unused or undefined citations"
        for ref in b.citations.values():  # authors, title, journal/venue and a year
            assert re.search(r"(19|20)\d\d", ref), ref


def test_shipped_bank_files_all_validate_by_path():
    files = [p for d in shipped_bank_dirs() for p in d.glob("*.yaml")]
    assert files
    for p in files:
        validate_bank_file(p)  # includes synthderm.yaml once it is written


def test_shipped_banks_cover_the_required_concepts():
    derm = load_bank("dermoscopy")
    for n in (
        "atypical_pigment_network",
        "blue_white_veil",
        "irregular_streaks",
        "regression_structures",
        "ruler",
        "purple_ink",
        "dark_corners",
        "hair",
        "gel_bubbles",
        "milia_like_cysts",
    ):
        assert n in derm.names
    assert set(derm.subset(groups=["artifact"]).names) >= {"ruler", "hair", "gel_bubbles"}
    cxr = load_bank("chest_xray")
    assert "0.5" in " ".join(cxr["cardiomegaly"].prompts)
    assert {"chest_tube", "pacemaker", "laterality_marker"} <= set(cxr.names)
    fundus = load_bank("retinal_fundus")
    assert {
        "microaneurysms",
        "hard_exudates",
        "cotton_wool_spots",
        "venous_beading",
        "irma",
        "neovascularisation_disc",
    } <= set(fundus.names)


def test_from_dict_fields(bank):
    assert bank.names == ("blue_white_veil", "milia_like_cysts", "ruler")
    assert bank.groups == ("colour", "structure", "artifact")
    assert bank.templates == ("{}",)
    assert bank["milia_like_cysts"].positive_classes == ("seborrheic_keratosis", "nevus")
    with pytest.raises(UnknownNameError, match="concept 'nope' is not in bank 'toy'"):
        bank["nope"]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_round_trip_is_exact(bank, tmp_path, suffix):
    p = bank.save(tmp_path / f"b{suffix}")
    again = load_bank(p)
    assert again == bank and again.fingerprint == bank.fingerprint
    first = p.read_bytes()
    again.save(p)
    assert p.read_bytes() == first  # byte-identical rewrite
    assert not [x for x in tmp_path.iterdir() if x.name.endswith(".tmp")]


def test_shipped_bank_round_trips(tmp_path):
    derm = load_bank("dermoscopy")
    again = load_bank(derm.save(tmp_path / "d.yaml"))
    assert again == derm and again.fingerprint == derm.fingerprint


def test_fingerprint_ignores_key_order_but_not_content(bank):
    data = copy.deepcopy(MINIMAL)
    shuffled = dict(reversed(list(data.items())))
    shuffled["concepts"] = [dict(reversed(list(c.items()))) for c in data["concepts"]]
    assert ConceptBank.from_dict(shuffled).fingerprint == bank.fingerprint
    data["concepts"][0]["prompts"].append("bluish veil")
    assert ConceptBank.from_dict(data).fingerprint != bank.fingerprint
    assert len(bank.fingerprint) == 64 and hash(bank) == hash(ConceptBank.from_dict(MINIMAL))


def _mutate(path, value):
    data = copy.deepcopy(MINIMAL)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "concept", "field", "hint"),
    [
        (("concepts", 0, "prompts"), KeyError, "#0 ('blue_white_veil')", "prompts", "add"),
        (("concepts", 0, "name"), "Blue White", "#0 ('Blue White')", "name", "snake_case"),
        (("concepts", 1, "prompts"), [], "#1 ('milia_like_cysts')", "prompts", "non-empty"),
        (("concepts", 0, "classes", "melanoma"), 2, "#0", "classes.melanoma", "-1, 0 or 1"),
        (("concepts", 0, "classes", "bcc"), 1, "#0", "classes.bcc", "not one of the bank"),
        (
            ("concepts", 0, "provenance", "citation"),
            "nobody2020",
            "#0",
            "provenance.citation",
            "add it there",
        ),
        (("concepts", 0, "provenance", "kind"), "guess", "#0", "provenance.kind", "one of"),
        (("concepts", 1, "provenance", "date"), KeyError, "#1", "provenance.date", "needs"),
        (("concepts", 2, "provenance", "score"), "high", "#2", "provenance.score", "number"),
        (("concepts", 2, "provenance"), KeyError, "#2", "provenance", "needs a provenance"),
        (("concepts", 0, "colour"), "blue", "#0", "colour", "unknown field"),
        (("concepts", 0, "group"), "Colour Group", "#0", "group", "lowercase"),
        (("concepts", 2, "name"), "blue_white_veil", "#2", "name", "duplicate"),
        (("schema_version",), 2, None, "schema_version", "reads schema_version 1"),
        (("version",), 1.0, None, "version", "quoted string"),
        (("templates",), ["a photo of"], None, "templates", "exactly one '{}'"),
        (("classes",), ["a", "a"], None, "classes", "duplicate"),
        (("concepts",), [], None, "concepts", "non-empty"),
        # text that renders differently from what is stored
        (("concepts", 0, "prompts"), ["blue\u202eliev"], "#0", "prompts[0]", "U+202E"),
        (("concepts", 0, "question"), "Is it\rveil?", "#0", "question", "U+000D"),
        (("citations", "argenziano1998"), "A\x1b[2J", None, "citations.argenziano1998", "U+001B"),
        (("description",), "ok\x00", None, "description", "U+0000"),
        (("classes",), ["nevus", "mel\u200banoma"], None, "classes[1]", "U+200B"),
        # classes that labels could not tell apart
        (("classes",), ["nevus", "Melanoma", "melanoma "], None, "classes", "only in case"),
        (("classes",), ["\uff2e\uff45\uff56\uff55\uff53", "nevus"], None, "classes", "Unicode"),
    ],
)
def test_schema_errors_name_file_concept_and_field(tmp_path, path, value, concept, field, hint):
    p = _write(tmp_path, _mutate(path, value))
    with pytest.raises(BankError) as info:
        validate_bank_file(p)
    msg = str(info.value)
    assert msg.startswith(str(p))
    assert f"field '{field}'" in msg
    if concept is not None:
        assert f"concept {concept}" in msg
    assert hint in msg


def test_yaml_is_read_with_safe_load(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(BankError, match="not valid YAML"):
        validate_bank_file(p)


def test_load_bank_lookup_errors(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown concept bank 'derm'.*'dermoscopy'"):
        load_bank("derm")
    with pytest.raises(MissingFileError, match="does not exist"):
        load_bank(tmp_path / "missing.yaml")
    with pytest.raises(BankError, match="unknown bank file extension"):
        load_bank("dermoscopy").save(tmp_path / "x.txt")
    # a folder named without a slash was looked up as a bank name; None was a TypeError
    (tmp_path / "banks").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        with pytest.raises(BankError, match="banks: not a regular file"):
            load_bank("banks")
    for bad in (None, {"id": "x"}):
        with pytest.raises(ConfigError, match=r"load_bank takes a shipped bank name.*got "):
            load_bank(bad)


def test_json_bank_file(tmp_path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps(MINIMAL))
    assert load_bank(p).names == ConceptBank.from_dict(MINIMAL).names


def test_subset(bank):
    assert bank.subset(groups=["artifact"]).names == ("ruler",)
    assert bank.subset(exclude_groups=["artifact"]).names == (
        "blue_white_veil",
        "milia_like_cysts",
    )
    # a concept associated with several classes is found under each
    assert bank.subset(classes=["nevus"]).names == ("milia_like_cysts",)
    assert bank.subset(classes=["seborrheic_keratosis"]).names == ("milia_like_cysts",)
    assert bank.subset(classes=["melanoma"], include_unassociated=True).names == (
        "blue_white_veil",
        "ruler",
    )
    assert bank.subset(names=["ruler", "blue_white_veil"]).names == ("blue_white_veil", "ruler")
    with pytest.raises(UnknownNameError, match="groups"):
        bank.subset(groups=["device"])
    with pytest.raises(UnknownNameError, match="classes"):
        bank.subset(classes=["bcc"])
    with pytest.raises(BankError, match="empty"):
        bank.subset(groups=["artifact"], classes=["melanoma"])
    assert bank.subset(groups=["colour"]).classes == bank.classes


def test_merge(bank):
    other_data = copy.deepcopy(MINIMAL)
    other_data["id"] = "other"
    other_data["classes"] = ["melanoma", "basal_cell_carcinoma"]
    other_data["concepts"] = [
        dict(MINIMAL["concepts"][0], classes={"melanoma": 1}),  # same name, different content
        {
            "name": "arborizing_vessels",
            "prompts": ["arborizing vessels"],
            "group": "structure",
            "classes": {"basal_cell_carcinoma": 1},
            "provenance": {"kind": "curated"},
        },
    ]
    other = ConceptBank.from_dict(other_data)
    with pytest.raises(BankError, match="'blue_white_veil' differs"):
        bank.merge(other)
    merged = bank.merge(other, on_conflict="keep_first")
    assert merged.id == "toy+other"
    assert merged.classes == ("nevus", "melanoma", "seborrheic_keratosis", "basal_cell_carcinoma")
    assert merged.names == ("blue_white_veil", "milia_like_cysts", "ruler", "arborizing_vessels")
    assert merged["blue_white_veil"] == bank["blue_white_veil"]
    second = bank.merge(other, on_conflict="keep_second")
    assert dict(second["blue_white_veil"].classes) == {"melanoma": 1}
    assert bank.merge(bank).names == bank.names  # identical concepts kept once
    clash = dict(other_data, citations={"argenziano1998": "someone else"})
    with pytest.raises(BankError, match="citation key 'argenziano1998'"):
        bank.merge(ConceptBank.from_dict(clash), on_conflict="keep_first")


def test_to_frame(bank):
    df = bank.to_frame()
    assert list(df.index) == list(bank.names)
    assert df.loc["ruler", "provenance"] == "retrieved"


_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("C", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(_names, min_size=1, max_size=6, unique=True),
    prompts=st.lists(_text, min_size=1, max_size=3),
    priors=st.lists(st.sampled_from([-1, 0, 1]), min_size=2, max_size=2),
)
def test_round_trip_property(tmp_path_factory, names, prompts, priors):
    data = {
        "schema_version": 1,
        "id": "prop",
        "version": "0.0.1",
        "classes": ["a", "b"],
        "concepts": [
            {
                "name": n,
                "prompts": prompts,
                "group": "finding",
                "classes": {"a": priors[0], "b": priors[1]},
                "provenance": {"kind": "retrieved", "document": "d", "passage": "p", "score": 0.5},
            }
            for n in names
        ],
    }
    b = ConceptBank.from_dict(data)
    d = tmp_path_factory.mktemp("rt")
    for suffix in (".yaml", ".json"):
        again = load_bank(b.save(d / f"b{suffix}"))
        assert again == b and again.fingerprint == b.fingerprint


def test_synthderm_bank_maps_one_to_one_to_ground_truth():
    assert "synthderm" in list_banks()
    from conceptlens.synthderm import SYNTHDERM_CLASSES, SYNTHDERM_CONCEPTS

    bank = load_bank("synthderm")
    assert bank.names == tuple(name for name, _ in SYNTHDERM_CONCEPTS)
    assert bank.groups == tuple(group for _, group in SYNTHDERM_CONCEPTS)
    assert bank.classes == tuple(SYNTHDERM_CLASSES)


@pytest.mark.parametrize("module", ["_bank", "_filter", "_retrieve", "_sanitize", "_llm"])
def test_docstring_examples(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"conceptlens.concepts.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- hostile files
_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
schema_version: 1
id: bomb
version: "1"
classes: [a, b]
concepts: *g
"""


def test_alias_bomb_is_refused_without_expanding(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(_BOMB)
    assert p.stat().st_size < 700
    with pytest.raises(BankError) as info:
        validate_bank_file(p)
    msg = str(info.value)
    assert msg.startswith(str(p)) and "aliases" in msg and "line 2" in msg
    assert len(msg) < 500


def test_alias_bomb_in_the_cli_prints_one_short_line(tmp_path):
    from click.testing import CliRunner

    from conceptlens.cli import main

    p = tmp_path / "bomb.yaml"
    p.write_text(_BOMB)
    res = CliRunner().invoke(main, ["bank", "show", str(p)])
    assert res.exit_code == 1
    assert len(res.output) < 600 and "aliases" in res.output


def test_self_referencing_alias(tmp_path):
    p = tmp_path / "self.yaml"
    p.write_text("schema_version: 1\nid: x\nversion: '1'\nclasses: &c [a, *c]\nconcepts: []\n")
    with pytest.raises(BankError, match=r"self\.yaml: line 4: YAML aliases"):
        validate_bank_file(p)


def test_values_in_messages_are_truncated(tmp_path):
    data = copy.deepcopy(MINIMAL)
    data["concepts"][0]["prompts"] = {"x" * 10: list(range(100_000))}
    p = _write(tmp_path, data)
    with pytest.raises(BankError) as info:
        validate_bank_file(p)
    assert "field 'prompts'" in str(info.value) and len(str(info.value)) < 600


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "schema_version: 1\nid: x\nversion: '1'\nclasses: [a, b]\n"
            "concepts:\n  - {name: a, prompts: [p], group: colour}\n"
            "concepts:\n  - {name: b, prompts: [q], group: colour}\n",
            7,
        ),
        (
            "schema_version: 1\nid: x\nversion: '1'\nclasses: [a, b]\n"
            "concepts:\n  - name: a\n    prompts: [p]\n    prompts: [q]\n    group: colour\n",
            8,
        ),
    ],
    ids=["two-concepts-lists", "two-prompts"],
)
def test_duplicate_yaml_keys_are_refused(tmp_path, text, line):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    with pytest.raises(
        BankError, match=rf"dup\.yaml: line {line}: duplicate key '(concepts|prompts)'"
    ):
        validate_bank_file(p)


def test_duplicate_json_keys_are_refused(tmp_path):
    text = json.dumps(MINIMAL)[:-1] + ', "concepts": []}'
    p = tmp_path / "dup.json"
    p.write_text(text)
    with pytest.raises(BankError, match=r"dup\.json: duplicate key 'concepts'"):
        validate_bank_file(p)


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_schema_version_must_be_the_integer_1(tmp_path, value):
    p = _write(tmp_path, _mutate(("schema_version",), value))
    with pytest.raises(BankError, match=r"field 'schema_version'"):
        validate_bank_file(p)


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (
            yaml.safe_dump(MINIMAL, allow_unicode=True)
            .replace("nevus", "névus")
            .encode("latin-1"),
            "not UTF-8",
        ),
        (yaml.safe_dump(MINIMAL).encode("utf-16"), "UTF-16"),
        (bytes(range(256)) * 4, "binary"),
    ],
    ids=["latin-1", "utf-16", "binary"],
)
def test_non_utf8_files_name_the_file(tmp_path, data, hint):
    p = tmp_path / "enc.yaml"
    p.write_bytes(data)
    with pytest.raises(BankError, match=rf"enc\.yaml: .*{hint}"):
        validate_bank_file(p)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deep_nesting_names_the_file(tmp_path, suffix):
    p = tmp_path / f"deep{suffix}"
    p.write_text('{"schema_version": 1, "x_deep": ' + "[" * 10_000 + "]" * 10_000 + "}")
    with pytest.raises(BankError, match=rf"deep\{suffix}: .*nested"):
        validate_bank_file(p)


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(MINIMAL).encode("utf-8"))
    assert validate_bank_file(p).id == "toy"


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_fifo_or_folder_is_not_read(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(BankError, match=r"pipe\.yaml: not a regular file"):
        load_bank(tmp_path / "pipe.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(BankError, match="not a regular file"):
        load_bank(tmp_path / "dir.yaml")


@pytest.mark.parametrize("template", ["{} with {x}", "{1} {}", "{} {0}", "a {} {", "{}{}"])
def test_templates_that_str_format_cannot_fill_are_refused(tmp_path, template):
    """Only `{}` may be a field: `{x}` passed the old count check and was a KeyError (an
    internal error) the first time a prompt was encoded."""
    from conceptlens.concepts._scoring import _resolve_templates

    with pytest.raises(BankError, match="no other braces"):
        validate_bank_file(_write(tmp_path, {**copy.deepcopy(MINIMAL), "templates": [template]}))
    with pytest.raises(ConfigError, match="no other braces"):
        _resolve_templates(None, ConceptBank.from_dict(MINIMAL), [template])
    ok = {**copy.deepcopy(MINIMAL), "templates": ["a {{dermoscopy}} image of {}"]}
    assert validate_bank_file(_write(tmp_path, ok)).templates == ("a {{dermoscopy}} image of {}",)
