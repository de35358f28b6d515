import json

import numpy as np
import pytest
import xarray as xr
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler

from conceptlens.concepts import ConceptStandardizer, score_concepts
from conceptlens.exceptions import ConfigError, DataError
from tests.backbones._tiny import VIT_AVG, dataset, images, tiny_backbone, tiny_bank


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("bb"), VIT_AVG, batch_size=4)


def _dense_reference(bb, ds, bank, templates):
    """Independent formula: embeddings from the model, cosine as a dense numpy product."""
    img = bb.encode_images(ds, normalize=False).astype(np.float64)
    img /= np.linalg.norm(img, axis=1, keepdims=True)

    def ensemble(prompts):
        flat = bb.encode_text([t.format(p) for p in prompts for t in templates], normalize=False)
        flat = flat.astype(np.float64)
        flat /= np.linalg.norm(flat, axis=1, keepdims=True)
        mean = flat.mean(axis=0)
        return mean / np.linalg.norm(mean)

    text = np.stack([ensemble(c.prompts) for c in bank.concepts])
    ref = ensemble(bank.reference_prompts)
    cos = (img[:, None, :] * text[None, :, :]).sum(-1)
    return cos, cos - (img @ ref)[:, None]


@pytest.mark.parametrize("templates", [("{}",), ("{}", "a photo of {}")])
def test_scores_equal_dense_numpy_cosine(bb, templates):
    ds = dataset(9)
    bank = tiny_bank(templates=templates)
    cos_ref, rel_ref = _dense_reference(bb, ds, bank, templates)
    cos = score_concepts(bb, ds, bank, mode="cosine", show_progress=False)
    rel = score_concepts(bb, ds, bank, mode="relative", show_progress=False)
    np.testing.assert_allclose(cos.values, cos_ref, atol=2e-6)
    np.testing.assert_allclose(rel.values, rel_ref, atol=2e-6)
    assert cos.dtype == np.float32


def test_relative_is_cosine_minus_reference_cosine(bb):
    ds = dataset(7)
    bank = tiny_bank()
    cos = score_concepts(bb, ds, bank, show_progress=False)
    rel = score_concepts(bb, ds, bank, mode="relative", show_progress=False)
    emb = bb.encode_images(ds)
    ref = bb.encode_text(list(bank.reference_prompts), templates=list(bank.templates))
    ref = ref.mean(0)
    ref /= np.linalg.norm(ref)
    np.testing.assert_allclose(rel.values, cos.values - (emb @ ref)[:, None], atol=2e-6)


def test_labelled_output(bb):
    ds = dataset(6)
    bank = tiny_bank()
    scores = score_concepts(bb, ds, bank, mode="relative", show_progress=False)
    assert scores.name == "concept_score"
    assert scores.dims == ("sample", "concept")
    assert list(scores["sample"].values) == ds.ids
    assert list(scores["concept"].values) == list(bank.names)
    assert list(scores["concept_group"].values) == list(bank.groups)
    assert list(scores["concept_source"].values) == ["curated", "llm", "curated"]
    for col in ds.metadata.columns:
        np.testing.assert_array_equal(scores[col].values, ds.metadata[col].to_numpy())
        assert scores[col].dims == ("sample",)
    attrs = scores.attrs
    assert attrs["backbone"] == bb.name and attrs["bank_id"] == "toy"
    assert attrs["bank_version"] == "0.1.0" and attrs["score_mode"] == "relative"
    assert len(attrs["template_hash"]) == 16
    assert json.loads(attrs["reference_prompts"]) == list(bank.reference_prompts)
    other = score_concepts(bb, ds, tiny_bank(templates=("x {}",)), show_progress=False)
    assert other.attrs["template_hash"] != attrs["template_hash"]
    # plain arrays get generated ids and no metadata coords
    arr = score_concepts(bb, images(3), bank, show_progress=False)
    assert list(arr["sample"].values) == ["img000000", "img000001", "img000002"]


def test_block_size_does_not_change_scores(bb):
    ds = dataset(10)
    bank = tiny_bank()
    a = score_concepts(bb, ds, bank, block_size=3, show_progress=False)
    b = score_concepts(bb, ds, bank, block_size=4096, show_progress=False)
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)


def test_cache_reused_across_banks_and_templates(bb, tmp_path):
    ds = dataset(8)
    bb.n_image_encodes = 0
    first = score_concepts(bb, ds, tiny_bank(), cache=tmp_path, show_progress=False)
    assert bb.n_image_encodes == 8
    bb.n_image_encodes = 0
    again = score_concepts(bb, ds, tiny_bank(), cache=tmp_path, show_progress=False)
    other = score_concepts(
        bb, ds, tiny_bank(templates=("a photo of {}",)), cache=tmp_path, show_progress=False
    )
    assert bb.n_image_encodes == 0
    np.testing.assert_array_equal(first.values, again.values)
    assert other.shape == first.shape


def test_invalid_options(bb):
    ds = dataset(3)
    with pytest.raises(ConfigError, match="mode"):
        score_concepts(bb, ds, tiny_bank(), mode="dot")
    with pytest.raises(ConfigError, match="reference_prompts"):
        score_concepts(bb, ds, tiny_bank(reference=False), mode="relative")
    with pytest.raises(DataError, match="empty"):
        score_concepts(bb, np.zeros((0, 8, 8, 3), np.uint8), tiny_bank())


def _fake_scores(rng, n, names=("a", "b", "c")):
    values = rng.normal(loc=[0.2, -0.1, 0.5], scale=[0.05, 0.3, 0.01], size=(n, 3))
    return xr.DataArray(
        values.astype(np.float32),
        dims=("sample", "concept"),
        coords={"sample": [f"s{i}" for i in range(n)], "concept": list(names)},
        name="concept_score",
        attrs={"bank_id": "toy"},
    )


def test_standardizer_fitted_on_train_only(rng):
    train, test = _fake_scores(rng, 50), _fake_scores(rng, 20)
    test = test.copy(data=test.values + 1.0)  # arithmetic drops attrs on older xarray
    std = ConceptStandardizer().fit(train)
    z_train, z_test = std.transform(train), std.transform(test)
    ref = StandardScaler().fit(train.values.astype(np.float64))
    np.testing.assert_allclose(z_test.values, ref.transform(test.values), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z_train.values.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z_train.values.std(0), 1, atol=1e-4)
    assert abs(z_test.values.mean()) > 1  # test is shifted: not refitted on it
    assert z_test.attrs["standardized"] == 1 and z_test.attrs["bank_id"] == "toy"
    np.testing.assert_allclose(std.inverse_transform(z_test).values, test.values, atol=1e-5)
    # aligns on concept names; numpy input works too
    shuffled = test.isel(concept=[2, 0, 1])
    np.testing.assert_allclose(std.transform(shuffled).values, z_test.values, atol=1e-6)
    np.testing.assert_allclose(std.transform(test.values), z_test.values, atol=1e-6)


def test_standardizer_errors(rng):
    scores = _fake_scores(rng, 10)
    with pytest.raises(NotFittedError):
        ConceptStandardizer().transform(scores)
    std = ConceptStandardizer().fit(scores)
    with pytest.raises(DataError, match=r"lack 1 concept\(s\)"):
        std.transform(scores.isel(concept=[0, 1]))
    # NaN names the sample and concept; an empty selection says so (were sklearn's words)
    bad = scores.copy()
    bad[3, 1] = np.nan
    name = str(scores.concept.values[1])
    with pytest.raises(DataError, match=rf"1 NaN or infinite value\(s\).*\['{name}'\]"):
        ConceptStandardizer().fit(bad)
    with pytest.raises(DataError, match=rf"in concept\(s\) \['{name}'\]"):
        std.transform(bad)
    with pytest.raises(DataError, match="0 samples"):
        ConceptStandardizer().fit(scores.isel(sample=slice(0, 0)))
    const = scores.copy(data=np.ones_like(scores.values))
    np.testing.assert_array_equal(ConceptStandardizer().fit_transform(const).values, 0.0)
    assert ConceptStandardizer(with_std=False).get_params() == {
        "with_mean": True,
        "with_std": False,
    }


class _CountingList(list):
    """A list of images that counts how often its items are read."""

    reads = 0

    def __getitem__(self, i):
        type(self).reads += 1
        return super().__getitem__(i)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def test_a_list_of_images_is_read_once_per_call_not_once_per_block(bb):
    from PIL import Image

    pil = _CountingList(Image.fromarray(im) for im in images(12))
    _CountingList.reads = 0
    scores = score_concepts(bb, pil, tiny_bank(), block_size=4, show_progress=False)
    assert _CountingList.reads == 12  # each image read once (was once per block and more)
    np.testing.assert_array_equal(
        scores.values,
        score_concepts(bb, images(12), tiny_bank(), block_size=4, show_progress=False).values,
    )


def test_write_scores_never_replaces_a_folder_of_other_files(tmp_path):
    """A .zarr output replaces the whole folder: a folder that is not a zarr store (here
    holding someone's thesis) is refused, as save_head refuses one without head.json."""
    from conceptlens.concepts import write_scores

    scores = xr.DataArray(
        np.zeros((2, 1), np.float32),
        dims=("sample", "concept"),
        coords={"sample": ["a", "b"], "concept": ["ruler"]},
        name="concept_score",
    )
    (tmp_path / "results.zarr").mkdir()
    (tmp_path / "results.zarr" / "thesis.txt").write_text("keep")
    with pytest.raises(ConfigError, match="holds other files and no zarr store"):
        write_scores(scores, tmp_path / "results.zarr")
    assert (tmp_path / "results.zarr" / "thesis.txt").read_text() == "keep"
    (tmp_path / "scores.nc").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        write_scores(scores, tmp_path / "scores.nc")
    # an earlier zarr store, or an empty folder, is replaced
    write_scores(scores, tmp_path / "s.zarr")
    write_scores(scores * 0 + 1, tmp_path / "s.zarr")
    assert float(xr.open_zarr(tmp_path / "s.zarr")["concept_score"].max()) == 1.0
    (tmp_path / "empty.zarr").mkdir()
    write_scores(scores, tmp_path / "empty.zarr")
