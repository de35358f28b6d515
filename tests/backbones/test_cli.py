import json
import time

import torch
from click.testing import CliRunner

from conceptlens.cli import main
from tests.backbones._tiny import VIT_AVG, write_checkpoint


def test_list_and_show():
    res = CliRunner().invoke(main, ["backbone", "list"])
    assert res.exit_code == 0, res.output
    assert "synthderm-lit" in res.output and "biomedclip" in res.output
    res = CliRunner().invoke(main, ["backbone", "list", "--json"])
    assert {c["name"] for c in json.loads(res.output)} >= {"synthderm-lit", "quiltnet"}
    res = CliRunner().invoke(main, ["backbone", "show", "biomedclip"])
    assert res.exit_code == 0
    assert json.loads(res.output)["image_size"] == 224


def test_unknown_name_is_one_line_error():
    res = CliRunner().invoke(main, ["backbone", "show", "nope"])
    assert res.exit_code == 1
    assert "error: unknown backbone 'nope'" in res.output and "synthderm-lit" in res.output


def test_check_offline_hub_backbone_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    t0 = time.perf_counter()
    res = CliRunner().invoke(main, ["backbone", "check", "biomedclip"])
    assert time.perf_counter() - t0 < 3.0
    assert res.exit_code == 1
    assert "hf download microsoft/BiomedCLIP" in res.output
    assert "--download" in res.output


def test_check_local_checkpoint(tmp_path):
    path = write_checkpoint(VIT_AVG, tmp_path / "m.safetensors")
    res = CliRunner().invoke(main, ["backbone", "check", str(path)])
    assert res.exit_code == 0, res.output
    assert "ok:" in res.output and "embed_dim 32" in res.output


def test_synthderm_lit_commands_are_registered():
    res = CliRunner().invoke(main, ["backbone", "--help"])
    assert res.exit_code == 0
    for cmd in ("list", "show", "check", "train-synthderm-lit", "evaluate-synthderm-lit"):
        assert cmd in res.output


def test_check_with_user_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    from conceptlens.backbones._synthderm_lit import WEIGHTS_PATH

    state = load_file(str(WEIGHTS_PATH))
    save_file(state, str(tmp_path / "same.safetensors"))
    state["logit_scale"] = torch.tensor(float("inf"))
    save_file(state, str(tmp_path / "inf.safetensors"))
    ok = CliRunner().invoke(
        main,
        ["backbone", "check", "synthderm-lit", "--weights", str(tmp_path / "same.safetensors")],
    )
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(
        main,
        ["backbone", "check", "synthderm-lit", "--weights", str(tmp_path / "inf.safetensors")],
    )
    assert bad.exit_code == 1
    assert "logit_scale" in bad.output and "NaN or infinite" in bad.output
