"""Every path argument of the API expands a leading ``~`` (HOME points at a tmp folder)."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)  # a literal "~" folder would appear here
    return tmp_path


def _images(folder, n=2):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"x{i}.png")


def test_data_loaders_expand_home(home):
    from conceptlens.data import load_folder, load_manifest, load_splits, save_splits

    _images(home / "folder" / "nevus")
    _images(home / "folder" / "melanoma")
    assert len(load_folder("~/folder")) == 4
    (home / "m.csv").write_text("path,label\nfolder/nevus/x0.png,a\nfolder/melanoma/x1.png,b\n")
    ds = load_manifest("~/m.csv")
    assert len(ds) == 2 and ds.validate().skipped == []
    ds = load_manifest("~/m.csv", root="~")
    assert len(ds) == 2 and ds.validate().skipped == []
    save_splits({"train": ["a"], "test": ["b"]}, "~/splits.json")
    assert (home / "splits.json").is_file()
    assert load_splits("~/splits.json") == {"train": ["a"], "test": ["b"]}
    assert not (home.parent / "~").exists()


def test_bank_and_corpus_paths_expand_home(home):
    from conceptlens.concepts import CorpusIndex, load_bank, read_corpus, validate_bank_file

    bank = load_bank("dermoscopy")
    bank.save("~/banks/mine.yaml")
    assert (home / "banks" / "mine.yaml").is_file()
    assert load_bank("~/banks/mine.yaml").fingerprint == bank.fingerprint
    assert validate_bank_file("~/banks/mine.yaml").id == bank.id
    (home / "c.txt").write_text("Melanoma shows a blue-white veil.\n\nNevi are symmetric.\n")
    passages = read_corpus("~/c.txt")
    assert len(passages) == 2
    CorpusIndex.build(passages).save("~/idx")
    assert (home / "idx" / "index.json").is_file()
    assert len(CorpusIndex.load("~/idx")) == 2
    assert not (home.parent / "~").exists()
