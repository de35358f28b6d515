"""`conceptlens bank list|show|validate` through click's CliRunner."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from conceptlens.cli import main
from conceptlens.concepts import list_banks, load_bank


def run(*args):
    return CliRunner().invoke(main, ["bank", *args])


def test_list():
    res = run("list")
    assert res.exit_code == 0, res.output
    for name in list_banks():
        assert name in res.output
    line = next(x for x in res.output.splitlines() if x.startswith("dermoscopy"))
    assert line.split()[1:4] == ["1.0.0", "4", str(len(load_bank("dermoscopy")))]


def test_show():
    res = run("show", "chest_xray")
    assert res.exit_code == 0, res.output
    assert "cardiomegaly" in res.output and "curated:danzer1919" in res.output
    assert "[hansell2008] Hansell DM" in res.output
    res = run("show", "dermoscopy", "--yaml")
    assert yaml.safe_load(res.output) == load_bank("dermoscopy").to_dict()


def test_show_unknown_bank_lists_banks():
    res = run("show", "nope")
    assert res.exit_code == 1
    assert "unknown concept bank 'nope'" in res.output and "dermoscopy" in res.output


def test_validate(tmp_path):
    good = load_bank("retinal_fundus").save(tmp_path / "good.yaml")
    data = load_bank("retinal_fundus").to_dict()
    data["concepts"][3]["classes"] = {"no_dr": 5}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    res = run("validate", str(good))
    assert res.exit_code == 0 and res.output.startswith("ok")
    res = run("validate", str(good), str(bad))
    assert res.exit_code == 1
    assert f"FAIL {bad}: concept #3 ('flame_haemorrhages'): field 'classes.no_dr'" in res.output
    assert "1 of 2 bank file(s) failed validation" in res.output


def test_validate_a_shipped_bank_by_name(tmp_path, monkeypatch):
    # as `bank show` does: a name that is not a file is looked up among the shipped banks
    from conceptlens.concepts._bank import _shipped_files

    monkeypatch.chdir(tmp_path)
    res = run("validate", "dermoscopy")
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"ok   {_shipped_files()['dermoscopy']}: dermoscopy ")
    res = run("validate", "dermoscopyy")
    assert res.exit_code == 1 and "dermoscopyy" in res.output
