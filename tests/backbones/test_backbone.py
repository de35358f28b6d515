import numpy as np
import pytest
import torch
from PIL import Image

from conceptlens.backbones import image_key
from conceptlens.exceptions import ConfigError, DataError
from tests.backbones._tiny import (
    TIMM_AVG,
    TIMM_TOK,
    VIT_AVG,
    VIT_TOK,
    dataset,
    images,
    tiny_backbone,
)


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("bb"), VIT_AVG, batch_size=4)


def test_input_types_give_identical_embeddings(bb):
    ds = dataset(6)
    arr = np.stack([ds.load_image(i) for i in range(len(ds))])
    from_array = bb.encode_images(arr)
    from_pil = bb.encode_images([Image.fromarray(a) for a in arr])
    from_ds = bb.encode_images(ds)
    from_list = bb.encode_images(list(arr))
    single = bb.encode_images(arr[2])
    assert from_array.shape == (6, bb.embed_dim) and from_array.dtype == np.float32
    np.testing.assert_array_equal(from_array, from_pil)
    np.testing.assert_array_equal(from_array, from_ds)
    np.testing.assert_array_equal(from_array, from_list)
    np.testing.assert_allclose(single[0], from_array[2], atol=1e-6)  # batch of 1
    np.testing.assert_allclose(np.linalg.norm(from_array, axis=1), 1.0, atol=1e-6)
    # batch size does not change the result beyond float noise
    np.testing.assert_allclose(bb.encode_images(arr, batch_size=1), from_array, atol=1e-6)


def test_dataloader_workers_give_the_same_embeddings(bb):
    ds = dataset(5)
    np.testing.assert_allclose(
        bb.encode_images(ds, num_workers=1), bb.encode_images(ds, num_workers=0), atol=1e-6
    )


def test_bad_inputs_are_rejected(bb):
    with pytest.raises(DataError, match="uint8"):
        bb.encode_images(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(DataError, match="shape"):
        bb.encode_images([np.zeros((8, 8), np.uint8)])


def test_preprocess_matches_open_clip_transform(bb):
    import open_clip

    # smooth images: resampling kernels agree on low frequencies
    yy, xx = np.mgrid[0:50, 0:70] / 50.0
    imgs = np.stack(
        [
            np.stack([np.sin(k * xx), np.cos(k * yy), np.sin(k * (xx + yy))], -1) * 120 + 128
            for k in (1.0, 2.0, 3.0)
        ]
    ).astype(np.uint8)
    ours = bb.preprocess(imgs)
    assert ours.shape == (3, 3, 32, 32)
    ref_tf = open_clip.image_transform(
        32, is_train=False, mean=bb.config.mean, std=bb.config.std, resize_mode="shortest"
    )
    ref = torch.stack([ref_tf(Image.fromarray(a)) for a in imgs])
    # PIL's and torch's antialiased bicubic kernels differ slightly; same geometry though
    assert (ours - ref).abs().mean() < 0.02
    same = images(2, size=(32, 32))
    expect = (torch.from_numpy(same).permute(0, 3, 1, 2) / 255.0 - bb._preprocessor.mean) / (
        bb._preprocessor.std
    )
    torch.testing.assert_close(bb.preprocess(same), expect)


def test_template_ensemble_equals_numpy_average(bb):
    texts = ["red dots", "a ruler"]
    templates = ["{}", "a photo of {}", "dermoscopy: {}"]
    got = bb.encode_text(texts, templates=templates)
    flat = bb.encode_text([t.format(x) for x in texts for t in templates])
    manual = flat.reshape(2, 3, -1).mean(axis=1)
    manual /= np.linalg.norm(manual, axis=1, keepdims=True)
    np.testing.assert_allclose(got, manual, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ConfigError):
        bb.encode_text(["x"], templates=["no placeholder"])


@pytest.mark.parametrize(
    ("cfg", "grid"), [(VIT_AVG, (4, 4)), (TIMM_AVG, (10, 10))], ids=["vit", "timm"]
)
def test_mean_of_patch_embeddings_is_the_avg_pooled_embedding(cfg, grid, tmp_path):
    bb = tiny_backbone(tmp_path, cfg)
    imgs = images(3, size=(bb.image_size, bb.image_size))
    patches, g = bb.patch_embeddings(imgs)
    assert g == grid and patches.shape == (3, *grid, bb.embed_dim)
    pooled = bb.encode_images(imgs, normalize=False)
    # avg pooling then a linear projection == mean of the projected patch tokens
    np.testing.assert_allclose(patches.mean(axis=(1, 2)), pooled, atol=1e-5)
    unit, _ = bb.patch_embeddings(imgs, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("cfg", [VIT_TOK, TIMM_TOK], ids=["vit", "timm-biomedclip-like"])
def test_token_pooled_towers_project_patches_like_the_class_token(cfg, tmp_path):
    bb = tiny_backbone(tmp_path, cfg)
    x = bb.preprocess(images(2, size=(bb.image_size, bb.image_size)))
    with torch.inference_mode():
        pooled, patches, grid = bb._tokens(x)
        ref = bb.model.encode_image(x)
    # the pooled path inside patch extraction is exactly the model's image embedding
    torch.testing.assert_close(pooled, ref)
    assert patches.shape == (2, *grid, bb.embed_dim)
    # class-token pooling: the patch mean is a different vector
    assert not torch.allclose(patches.mean(dim=(1, 2)), ref, atol=1e-3)


def test_image_text_module_is_differentiable(bb):
    imgs = images(2, size=(32, 32))
    module = bb.image_text_module()
    x = bb.preprocess(imgs).requires_grad_(True)
    out = module(x)
    np.testing.assert_allclose(out.detach().numpy(), bb.encode_images(imgs), atol=1e-6)
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    pix = bb.image_text_module(pixel_space=True)
    raw = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    np.testing.assert_allclose(pix(raw).detach().numpy(), bb.encode_images(imgs), atol=1e-5)


def test_fingerprint_tracks_weights_preprocessing_and_precision(tmp_path):
    a = tiny_backbone(tmp_path, VIT_AVG, seed=0)
    a2 = tiny_backbone(tmp_path, VIT_AVG, seed=0)
    b = tiny_backbone(tmp_path, VIT_AVG, seed=1)
    assert a.fingerprint == a2.fingerprint
    assert a.fingerprint != b.fingerprint
    bf = tiny_backbone(tmp_path, VIT_AVG, seed=0, precision="bf16")
    assert bf.fingerprint != a.fingerprint
    with pytest.raises(ConfigError, match="precision"):
        tiny_backbone(tmp_path, VIT_AVG, precision="int3")


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_default_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    from conceptlens.backbones._backbone import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device().type == expected
    assert pick_device("cpu").type == "cpu"  # an explicit device always wins


def test_backbone_runs_on_the_default_device(bb):
    from conceptlens.backbones._backbone import pick_device

    assert bb.device == pick_device()
    assert bb.precision in ("fp32", "bf16", "fp16")
    assert f"device='{bb.device}'" in repr(bb) or str(bb.device) in repr(bb)


def test_image_key_depends_on_content_and_shape():
    a = np.zeros((4, 6, 3), np.uint8)
    assert image_key(a) == image_key(a.copy())
    assert image_key(a) != image_key(np.zeros((6, 4, 3), np.uint8))
    b = a.copy()
    b[0, 0, 0] = 1
    assert image_key(a) != image_key(b)
    assert len(image_key(a)) == 64


def test_synthderm_lit_architecture_offline():
    from conceptlens.backbones import load_backbone

    bb = load_backbone("synthderm-lit", pretrained=False)
    assert bb.image_size == 96
    imgs = images(2, size=(96, 96))
    emb = bb.encode_images(imgs)
    assert emb.shape == (2, bb.embed_dim)
    txt = bb.encode_text(
        ["blue-white veil", "ruler"], templates=["{}", "a dermoscopy image of {}"]
    )
    assert txt.shape == (2, bb.embed_dim)
    patches, grid = bb.patch_embeddings(imgs)
    assert patches.shape == (2, *grid, bb.embed_dim)
    assert bb.fingerprint.startswith("synthderm-lit-")


def test_elongated_images_are_cropped_before_resizing(bb):
    """shortest mode keeps the central square: cropping the long side first changes no
    output pixel, and a 1 x 20,000 strip is not resized to gigabytes."""
    import numpy as np

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 255, (12, 240, 3), dtype=np.uint8)  # 20:1
    pre = bb._preprocessor
    full = pre.max_aspect_ratio
    try:
        pre.max_aspect_ratio = 1e9  # no crop: the old path
        ref = bb.preprocess([wide])
    finally:
        pre.max_aspect_ratio = full
    got = bb.preprocess([wide])
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)
    strip = rng.integers(0, 255, (1, 20_000, 3), dtype=np.uint8)
    assert tuple(bb.preprocess([strip]).shape) == (1, 3, bb.image_size, bb.image_size)
    assert bb.preprocess([strip.transpose(1, 0, 2)]).shape == (1, 3, bb.image_size, bb.image_size)


def test_masked_text_towers_get_no_padding():
    """HF text towers see each prompt at its own length; companions change nothing."""
    import torch

    from conceptlens.backbones import load_backbone

    bb = load_backbone("synthderm-lit", pretrained=False)
    lengths: list[int] = []
    real = bb.model.encode_text

    def spy(tokens, *args, **kwargs):
        lengths.append(int(tokens.shape[1]))
        assert (tokens[:, -1] != 0).all()  # no padding column in any batch
        return real(tokens, *args, **kwargs)

    bb.model.encode_text = spy
    prompts = ["hair", "a long description of an irregular pigment network at the border"]
    both = bb.encode_text(prompts, normalize=False)
    assert max(lengths) < 32 < bb.tokenizer(["x"]).shape[1]  # not the 128-token context
    alone = load_backbone("synthderm-lit", pretrained=False).encode_text(
        prompts[:1], normalize=False
    )
    np.testing.assert_array_equal(both[:1], alone)  # independent of the other prompt
    # and equal to the padded computation up to float rounding
    with torch.no_grad():
        padded = real(bb.tokenizer(prompts)).float().numpy()
    np.testing.assert_allclose(both, padded, atol=1e-5)
