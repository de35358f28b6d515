import json

import numpy as np
import pytest

from conceptlens.backbones import EmbeddingCache, image_key
from conceptlens.exceptions import CacheError, ConfigError
from tests.backbones._tiny import VIT_AVG, dataset, tiny_backbone


def _keys(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.bytes(32).hex() for _ in range(n)]


def _fill(tmp_path, n=10, dim=4, chunk_rows=4):
    cache = EmbeddingCache(tmp_path, "fp-test", row_shape=(dim,), chunk_rows=chunk_rows)
    keys = _keys(n)
    rows = np.random.default_rng(1).standard_normal((n, dim)).astype(np.float32)
    with cache.writer() as w:
        w.append(keys[: n // 2], rows[: n // 2])
        w.append(keys[n // 2 :], rows[n // 2 :])
    return cache, keys, rows


def _segment(tmp_path):
    (seg,) = (tmp_path / "fp-test" / "image").glob("seg-*")
    return seg


def test_round_trip_across_instances(tmp_path):
    cache, keys, rows = _fill(tmp_path)
    np.testing.assert_array_equal(cache.get(keys), rows)
    reopened = EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))
    assert len(reopened) == 10
    np.testing.assert_array_equal(reopened.get(keys[::-1]), rows[::-1])
    assert reopened.contains([*keys[:2], _keys(1, seed=9)[0]]).tolist() == [True, True, False]


def test_concurrent_writers_use_separate_segments(tmp_path):
    cache = EmbeddingCache(tmp_path, "fp", row_shape=(3,))
    other = EmbeddingCache(tmp_path, "fp", row_shape=(3,))
    k1, k2 = _keys(2, seed=5)
    with cache.writer() as w1, other.writer() as w2:
        w1.append([k1], np.ones((1, 3), np.float32))
        w2.append([k2], np.full((1, 3), 2.0, np.float32))
    fresh = EmbeddingCache(tmp_path, "fp", row_shape=(3,))
    np.testing.assert_array_equal(fresh.get([k1, k2]), [[1, 1, 1], [2, 2, 2]])
    assert len(list((tmp_path / "fp" / "image").glob("seg-*"))) == 2


def test_uncommitted_rows_are_invisible(tmp_path):
    _fill(tmp_path)
    seg = _segment(tmp_path)
    meta = json.loads((seg / "commit.json").read_text())
    assert meta["rows"] == 10
    # a writer that died before its first commit leaves a folder without commit.json
    (tmp_path / "fp-test" / "image" / "seg-dead").mkdir()
    assert len(EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))) == 10


def test_truncated_chunk_is_reported(tmp_path):
    _fill(tmp_path)
    chunk = next(
        p for p in (_segment(tmp_path) / "data").rglob("*") if p.is_file() and p.name == "0"
    )
    chunk.write_bytes(chunk.read_bytes()[:7])
    cache = EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))
    with pytest.raises(CacheError, match="delete"):
        cache.get(_keys(10))


def test_altered_chunk_is_reported(tmp_path):
    _, keys, _ = _fill(tmp_path)
    seg = _segment(tmp_path)
    import zarr

    arr = zarr.open_array(str(seg / "data"), mode="r+")
    arr[1, 2] = arr[1, 2] + 1e-3  # a valid chunk with a silently changed value
    with pytest.raises(CacheError, match="checksum"):
        EmbeddingCache(tmp_path, "fp-test", row_shape=(4,)).get(keys[:2])


def test_altered_keys_or_metadata_are_reported(tmp_path):
    _fill(tmp_path)
    seg = _segment(tmp_path)
    import zarr

    karr = zarr.open_array(str(seg / "keys"), mode="r+")
    karr[0, 0] = (int(karr[0, 0]) + 1) % 256
    with pytest.raises(CacheError, match="keys"):
        EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))
    karr[0, 0] = (int(karr[0, 0]) - 1) % 256
    EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))  # restored: fine again
    meta = json.loads((seg / "commit.json").read_text())
    (seg / "commit.json").write_text(json.dumps({**meta, "rows": 50}))
    with pytest.raises(CacheError, match="50 committed"):
        EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))
    (seg / "commit.json").write_text("{not json")
    with pytest.raises(CacheError, match="unreadable"):
        EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))
    (seg / "data" / "zarr.json").write_text("garbage")
    (seg / "commit.json").write_text(json.dumps(meta))
    with pytest.raises(CacheError):
        EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))


def test_mismatched_cache_is_reported(tmp_path):
    _fill(tmp_path)
    with pytest.raises(CacheError, match="shape"):
        EmbeddingCache(tmp_path, "fp-test", row_shape=(8,))
    manifest = tmp_path / "fp-test" / "cache.json"
    manifest.write_text(json.dumps({"format": "x", "version": 1, "fingerprint": "other"}))
    with pytest.raises(CacheError, match=r"cache\.json"):
        EmbeddingCache(tmp_path, "fp-test", row_shape=(4,))


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("bb"), VIT_AVG, batch_size=4)


def test_cache_hit_encodes_no_image(bb, tmp_path):
    ds = dataset(10)
    bb.n_image_encodes = 0
    first = bb.encode_images(ds, cache=tmp_path)
    assert bb.n_image_encodes == 10
    np.testing.assert_array_equal(first, bb.encode_images(ds))
    bb.n_image_encodes = 0
    second = bb.encode_images(ds, cache=tmp_path)
    assert bb.n_image_encodes == 0
    np.testing.assert_array_equal(first, second)
    cache = EmbeddingCache(tmp_path, bb.fingerprint, row_shape=(bb.embed_dim,))
    keys = [image_key(ds.load_image(i)) for i in range(10)]
    np.testing.assert_array_equal(cache.get(keys), first)


def test_kill_and_resume_encodes_only_the_rest(bb, tmp_path, monkeypatch):
    ds = dataset(12)
    calls = {"n": 0}
    real = bb._image_forward

    def dies_on_third_batch(x, normalize):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(x, normalize)

    monkeypatch.setattr(bb, "_image_forward", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        bb.encode_images(ds, cache=tmp_path, batch_size=4)
    monkeypatch.setattr(bb, "_image_forward", real)
    bb.n_image_encodes = 0
    resumed = bb.encode_images(ds, cache=tmp_path, batch_size=4)
    assert bb.n_image_encodes == 4  # the two committed batches (8 images) were reused
    np.testing.assert_allclose(resumed, bb.encode_images(ds, batch_size=4), atol=1e-6)


def test_identical_images_are_encoded_once(bb, tmp_path):
    ds = dataset(3)
    img = ds.load_image(0)
    bb.n_image_encodes = 0
    out = bb.encode_images(np.stack([img, img, img]), cache=tmp_path)
    assert bb.n_image_encodes == 1
    np.testing.assert_array_equal(out[0], out[2])


def test_patch_embeddings_are_cached(bb, tmp_path):
    ds = dataset(5)
    direct, grid = bb.patch_embeddings(ds)
    bb.n_image_encodes = 0
    first, g1 = bb.patch_embeddings(ds, cache=tmp_path)
    assert bb.n_image_encodes == 5 and g1 == grid
    bb.n_image_encodes = 0
    second, _ = bb.patch_embeddings(ds, cache=tmp_path)
    assert bb.n_image_encodes == 0
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, direct, atol=1e-6)
    assert (tmp_path / bb.fingerprint / "patch").is_dir()


def test_identical_patch_images_are_encoded_once(bb, tmp_path):
    img = dataset(1).load_image(0)
    bb.n_image_encodes = 0
    out, _ = bb.patch_embeddings(np.stack([img, img]), cache=tmp_path)
    assert bb.n_image_encodes == 1
    np.testing.assert_array_equal(out[0], out[1])


def test_cache_holds_normalised_embeddings_only(bb, tmp_path):
    with pytest.raises(ConfigError, match="normalize=True"):
        bb.encode_images(dataset(2), cache=tmp_path, normalize=False)


def test_open_cache_checks_the_backbone_and_opens_sibling_kinds(bb, tmp_path):
    image = bb.open_cache(tmp_path)
    assert bb.open_cache(image) is image
    text = bb.open_cache(image, kind="text")
    assert text.kind == "text" and text.folder == image.folder
    other = EmbeddingCache(tmp_path, "someone-else", row_shape=(bb.embed_dim,))
    with pytest.raises(ConfigError, match="someone-else"):
        bb.encode_images(dataset(2), cache=other)


def test_indices_embed_a_subset(bb, tmp_path):
    ds = dataset(6)
    full = bb.encode_images(ds)
    # other batch compositions: equal up to float rounding
    np.testing.assert_allclose(bb.encode_images(ds, indices=[4, 1]), full[[4, 1]], atol=1e-6)
    part = bb.encode_images(ds, indices=[4, 1], cache=tmp_path)
    np.testing.assert_array_equal(bb.encode_images(ds, cache=tmp_path)[[4, 1]], part)


class _CountingText:
    """Wraps a model's ``encode_text`` and counts the prompts it encodes."""

    def __init__(self, model):
        self.model, self.real, self.n = model, model.encode_text, 0

    def __call__(self, tokens, *args, **kwargs):
        self.n += tokens.shape[0]
        return self.real(tokens, *args, **kwargs)


def test_text_embeddings_are_read_through_the_cache(tmp_path):
    import torch
    import torch.nn.functional as F

    texts, tpls = ["hair", "ruler", "hair"], ["{}", "a photo of {}"]
    (tmp_path / "a").mkdir()
    first = tiny_backbone(tmp_path / "a", VIT_AVG)
    assert first.embed_dim == 32  # (may probe the text tower once; not counted below)
    counter = _CountingText(first.model)
    first.model.encode_text = counter
    cached = first.encode_text(texts, templates=tpls, cache=tmp_path / "cache")
    assert counter.n == 4  # two texts x two templates; the repeated "hair" is not re-encoded
    first.encode_text(["ruler"], templates=tpls)
    assert counter.n == 4  # memoised on the backbone

    # a fresh backbone with the same weights reads every prompt from the cache
    second = tiny_backbone(tmp_path / "a", VIT_AVG)
    assert second.fingerprint == first.fingerprint and second.embed_dim == 32
    counter2 = _CountingText(second.model)
    second.model.encode_text = counter2
    again = second.encode_text(texts, templates=tpls, cache=tmp_path / "cache")
    assert counter2.n == 0
    np.testing.assert_array_equal(again, cached)

    # independent reference: open_clip directly, template ensemble by hand
    with torch.no_grad():
        raw = counter.real(first.tokenizer([t.format(x) for x in texts for t in tpls]))
    ref = F.normalize(F.normalize(raw.float(), dim=-1).view(3, 2, -1).mean(1), dim=-1)
    np.testing.assert_allclose(cached, ref.numpy(), atol=1e-6)
    assert (tmp_path / "cache" / first.fingerprint / "text").is_dir()
