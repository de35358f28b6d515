import itertools

import numpy as np
import pytest

from conceptlens.backbones import EmbeddingCache, load_backbone
from conceptlens.concepts import score_concepts
from conceptlens.concepts._scoring import shard_bounds
from tests.backbones._tiny import VIT_AVG, dataset, tiny_bank, write_checkpoint


def test_shards_are_whole_blocks():
    assert shard_bounds(10, 2, 4) == [(0, 8), (8, 10)]
    assert shard_bounds(24, 2, 4) == [(0, 12), (12, 24)]
    assert shard_bounds(3, 4, 8) == [(0, 3)]
    for n, w, s in [(100, 3, 7), (5, 8, 1), (64, 2, 16)]:
        bounds = shard_bounds(n, w, s)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a % s == 0 for a, _ in bounds)
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(bounds))


@pytest.mark.slow
def test_dask_scores_are_bit_identical(tmp_path):
    import dask.array as da
    import distributed

    ckpt = write_checkpoint(VIT_AVG, tmp_path / "tiny.safetensors", seed=7)
    bb = load_backbone(ckpt, batch_size=4)
    ds = dataset(24)
    bank = tiny_bank()
    single = score_concepts(bb, ds, bank, mode="relative", block_size=8, show_progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        lazy = score_concepts(
            bb,
            ds,
            bank,
            mode="relative",
            block_size=8,
            cache=tmp_path / "cache",
            client=client,
            show_progress=False,
        )
        assert isinstance(lazy.data, da.Array)
        assert lazy.data.numblocks[0] == 2  # one shard per worker
        computed = lazy.compute()
        # random weights are shipped to each worker once rather than reloaded
        random_bb = load_backbone(ckpt, batch_size=4, pretrained=True)
        random_bb.spec = None
        shipped = score_concepts(
            random_bb, ds, bank, mode="relative", block_size=8, client=client
        ).compute()
    np.testing.assert_array_equal(computed.values, single.values)
    np.testing.assert_array_equal(shipped.values, single.values)
    assert computed.attrs == single.attrs
    # the workers filled the shared cache: a local rerun encodes nothing
    cache = EmbeddingCache(tmp_path / "cache", bb.fingerprint, row_shape=(bb.embed_dim,))
    assert len(cache) == 24
    bb.n_image_encodes = 0
    again = score_concepts(
        bb, ds, bank, mode="relative", block_size=8, cache=tmp_path / "cache", show_progress=False
    )
    assert bb.n_image_encodes == 0
    np.testing.assert_array_equal(again.values, single.values)


def test_dask_blocks_are_checked_for_non_finite_scores():
    import dask.array as da

    from conceptlens.concepts._scoring import _FiniteBlockCheck
    from conceptlens.exceptions import DataError

    values = np.zeros((6, 2), np.float32)
    values[4, 1] = np.nan
    lazy = da.from_array(values, chunks=(3, 2)).map_blocks(
        _FiniteBlockCheck([f"s{i}" for i in range(6)], ["a", "b"], "toy"), dtype=np.float32
    )
    with pytest.raises(DataError, match=r"1 of 3 samples \('s4'\) and 1 concepts \('b'\)"):
        lazy.compute(scheduler="synchronous")
    ok = da.from_array(values[:3], chunks=(3, 2)).map_blocks(
        _FiniteBlockCheck(["s0", "s1", "s2"], ["a", "b"], "toy"), dtype=np.float32
    )
    np.testing.assert_array_equal(ok.compute(scheduler="synchronous"), values[:3])
