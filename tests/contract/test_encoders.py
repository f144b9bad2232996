"""Every registered encoder that can be built here passes the same contract.

fake: always. efficientnet-lite0 / mobilenet-v2: real weights (slow; exported once per session into a
session cache dir). hf-clip: a tiny randomly initialised CLIP saved to a temp folder. open-clip: skipped
unless the ``open_clip`` package is installed (it needs torchvision, which does not import here).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from visrec.encoders import ENCODERS, Encoder, create_encoder, encoder_from_info
from visrec.errors import BadImage, BadInput
from visrec.types import Embeddings

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_OPEN_CLIP = importlib.util.find_spec("open_clip") is not None


def _byte_chars() -> list[str]:
    """GPT-2 / CLIP byte-to-unicode table (the 256 base symbols of a byte-level BPE vocab)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, extra = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return [chr(c) for c in cs]


def make_tiny_clip(folder: Path) -> Path:
    """Save a random 2-layer CLIP (32-px images, 8-px patches), a byte-level tokenizer and a processor."""
    import inspect

    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": 600,
            "max_position_embeddings": 40,
            "bos_token_id": 512,
            "eos_token_id": 513,
            "pad_token_id": 513,
        },
        vision_config={**tower, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    if "vocab" in inspect.signature(CLIPTokenizer.__init__).parameters:  # transformers >= 5
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    else:
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAS_TRANSFORMERS:
        pytest.skip("transformers is not installed (pip install 'visrec[clip]')")
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


SLOW = pytest.mark.slow
BACKENDS = [
    pytest.param("fake", id="fake"),
    pytest.param("efficientnet-lite0", id="efficientnet-lite0", marks=SLOW),
    pytest.param("efficientnet-lite1", id="efficientnet-lite1", marks=SLOW),
    pytest.param("efficientnet-lite2", id="efficientnet-lite2", marks=SLOW),
    pytest.param("mobilenet-v2", id="mobilenet-v2", marks=SLOW),
    pytest.param("efficientnet-ensemble", id="efficientnet-ensemble", marks=SLOW),
    pytest.param("hf-clip", id="hf-clip"),
    pytest.param("open-clip", id="open-clip"),
    pytest.param("adapted", id="adapted"),
    pytest.param("finetuned", id="finetuned", marks=SLOW),
]
# An ensemble is not registered under its own name: any registered encoders joined by "+" make one.
ENSEMBLES = [
    pytest.param("fake+adapted", id="ensemble-fake+adapted"),
    pytest.param("efficientnet-lite0+mobilenet-v2", id="ensemble-lite0+mobilenet-v2", marks=SLOW),
]


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 16-d adapter over the fake encoder, saved as visrec finetune saves one."""
    from visrec.train import Adapter, HeadSpec, build_head, save_adapter

    fake = create_encoder("fake")
    base = {"name": fake.name, "fingerprint": fake.fingerprint, "describe": fake.describe()}
    head = build_head(HeadSpec(fake.dim, 16, "mlp", 32), seed=0)
    return save_adapter(Adapter("linear", {"image": head}, base), tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="session")
def finetuned_dir(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> Path:
    """EfficientNet-Lite0's own weights saved as ``visrec finetune --unfreeze`` saves a fine-tuned encoder."""
    from visrec.train.tail import TailConfig, TailResult, save_backbone

    base = create_encoder("efficientnet-lite0")
    record = TailResult(0, 0, "not trained", 0.0, 0.0, [], [], 0)
    return save_backbone(base.build_torch(), base, tmp_path_factory.mktemp("finetuned"), record, TailConfig())  # type: ignore[attr-defined]


def _options(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if name == "finetuned":
        return {"model": str(request.getfixturevalue("finetuned_dir"))}
    if name == "hf-clip":
        return {"model": str(request.getfixturevalue("tiny_clip_dir"))}
    if name == "adapted":
        return {"adapter": str(request.getfixturevalue("adapter_dir"))}
    if name == "fake+adapted":
        return {"members": [{}, {"adapter": str(request.getfixturevalue("adapter_dir"))}]}
    if name == "open-clip" and not HAS_OPEN_CLIP:
        pytest.skip("open_clip is not installed (it needs torchvision, which does not import beside this torch)")
    return {}


@pytest.fixture(scope="module", params=BACKENDS + ENSEMBLES)
def built(request: pytest.FixtureRequest, session_cache: Path) -> tuple[Encoder, dict[str, Any]]:
    options = _options(request.param, request)
    return create_encoder(request.param, **options), options


@pytest.fixture
def encoder(built: tuple[Encoder, dict[str, Any]]) -> Encoder:
    return built[0]


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 24 + 7 * i, 61 - 3 * i
        base = rng.integers(0, 255, size=(1, 1, 3))
        noise = rng.integers(-40, 40, size=(h, w, 3))
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


def test_every_registered_encoder_is_covered() -> None:
    assert set(ENCODERS.names()) == {p.values[0] for p in BACKENDS}


def test_protocol_attributes(encoder: Encoder) -> None:
    assert isinstance(encoder, Encoder)
    assert encoder.dim > 0 and encoder.input_size >= 32
    assert encoder.fingerprint.startswith(encoder.name + "-")


def test_output_type_shape_dtype_and_norms(encoder: Encoder) -> None:
    emb = encoder.encode_images(_images(4), ids=["a", "b", "c", "d"])
    assert isinstance(emb, Embeddings)
    assert emb.vectors.shape == (4, encoder.dim) and emb.vectors.dtype == np.float32
    assert emb.ids == ("a", "b", "c", "d") and emb.encoder_id == encoder.fingerprint
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    if encoder.joint_dim is None:
        assert emb.joint is None
    else:
        assert emb.joint is not None and emb.joint.shape == (4, encoder.joint_dim)
        np.testing.assert_allclose(np.linalg.norm(emb.joint, axis=1), 1.0, atol=1e-5)


def test_order_preserved_across_batch_sizes(encoder: Encoder) -> None:
    images = _images(9, seed=1)
    one = encoder.encode_images(images, batch_size=1).vectors
    seven = encoder.encode_images(images, batch_size=7).vectors
    np.testing.assert_allclose(one, seven, atol=1e-5)
    backwards = encoder.encode_images(images[::-1], batch_size=7).vectors
    np.testing.assert_allclose(backwards[::-1], seven, atol=1e-5)
    assert not np.allclose(seven[0], seven[1], atol=1e-3), "different images should not share a vector"


def test_deterministic_and_stable_across_instances(built: tuple[Encoder, dict[str, Any]]) -> None:
    encoder, options = built
    images = _images(3, seed=2)
    first = encoder.encode_images(images).vectors
    np.testing.assert_array_equal(first, encoder.encode_images(images).vectors)
    again = create_encoder(encoder.name, **options)
    assert again.fingerprint == encoder.fingerprint
    np.testing.assert_allclose(again.encode_images(images).vectors, first, atol=1e-6)


def test_accepts_paths_pil_gray_and_odd_sizes(encoder: Encoder, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:45, 0:71]
    smooth = np.stack([xx * 3.5, yy * 5.0, 255 - xx * 2.0 - yy * 2.0], axis=2)  # JPEG-friendly gradients
    rgb = np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    gray = rng.integers(0, 255, size=(33, 20), dtype=np.uint8)
    inputs = [
        rgb,
        str(tmp_path / "x.png"),
        tmp_path / "x.jpg",
        Image.fromarray(rgb),
        gray,
        Image.fromarray(gray),
    ]
    vectors = encoder.encode_images(inputs).vectors
    assert vectors.shape == (6, encoder.dim)
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-5)  # lossless file == array
    np.testing.assert_allclose(vectors[3], vectors[0], atol=1e-5)  # PIL == array
    np.testing.assert_allclose(vectors[5], vectors[4], atol=1e-5)  # gray PIL == gray array
    assert float(vectors[2] @ vectors[0]) > 0.9  # JPEG of the same picture stays close


def test_empty_input_and_bad_arguments(encoder: Encoder, tmp_path: Path) -> None:
    empty = encoder.encode_images([])
    assert empty.vectors.shape == (0, encoder.dim) and empty.ids == ()
    with pytest.raises(BadInput):
        encoder.encode_images(_images(2), ids=["only-one"])
    with pytest.raises(BadInput):
        encoder.encode_images(_images(1)[0])  # type: ignore[arg-type]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(BadImage):
        encoder.encode_images([tmp_path / "broken.jpg"])


def test_encode_texts(encoder: Encoder) -> None:
    if encoder.joint_dim is None:
        with pytest.raises(Exception, match="text"):
            encoder.encode_texts(["a photo of a cat"])
        return
    texts = encoder.encode_texts(["a photo of a cat", "a photo of a truck", "a photo of a cat"])
    assert texts.shape == (3, encoder.joint_dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(texts[0], texts[2], atol=1e-6)
    assert not np.allclose(texts[0], texts[1], atol=1e-3)


def test_describe_round_trips_through_encoder_from_info(encoder: Encoder) -> None:
    info = json.loads(json.dumps(encoder.describe()))
    assert info["name"] == encoder.name and info["dim"] == encoder.dim
    rebuilt = encoder_from_info(info)
    assert rebuilt.fingerprint == encoder.fingerprint


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("fake", {"dim": 32}),
        pytest.param("efficientnet-lite0", {"crop": "none"}, marks=SLOW),
        pytest.param("efficientnet-lite0", {"input_size": 256}, marks=SLOW),
        pytest.param("mobilenet-v2", {"resample": "bicubic"}, marks=SLOW),
    ],
)
def test_fingerprint_changes_with_options(name: str, changed: dict[str, Any], session_cache: Path) -> None:
    assert create_encoder(name).fingerprint == create_encoder(name).fingerprint
    assert create_encoder(name, **changed).fingerprint != create_encoder(name).fingerprint


def test_hf_clip_fingerprint_follows_the_processor_config(tiny_clip_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_clip_dir, tmp_path / "copy"))
    cfg_path = copy / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["image_mean"] = [0.5, 0.5, 0.5]
    cfg_path.write_text(json.dumps(cfg))
    original = create_encoder("hf-clip", model=str(tiny_clip_dir))
    assert create_encoder("hf-clip", model=str(copy)).fingerprint != original.fingerprint


def test_hf_clip_matches_transformers_directly(tiny_clip_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, CLIPModel

    encoder = create_encoder("hf-clip", model=str(tiny_clip_dir))
    model = CLIPModel.from_pretrained(str(tiny_clip_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_clip_dir))
    images = [np.full((32, 32, 3), c, np.uint8) for c in (0, 90, 200)] + _images(2, seed=4)
    pixels = np.stack([encoder.prep(im) for im in images])  # type: ignore[attr-defined]
    texts = ["a photo of a cat", "hello"]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        img = model.get_image_features(pixel_values=torch.from_numpy(pixels))
        txt = model.get_text_features(**tokens)
    img = img if isinstance(img, torch.Tensor) else img.pooler_output
    txt = txt if isinstance(txt, torch.Tensor) else txt.pooler_output
    img = torch.nn.functional.normalize(img, dim=1).numpy()
    txt = torch.nn.functional.normalize(txt, dim=1).numpy()
    np.testing.assert_allclose(encoder.encode_images(images).vectors, img, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(texts), txt, atol=1e-5)
    emb = encoder.encode_images(images)
    assert emb.joint is not None and np.array_equal(emb.joint, emb.vectors)


def test_hf_clip_preprocessing_matches_its_image_processor(tiny_clip_dir: Path) -> None:
    from transformers import AutoImageProcessor

    encoder = create_encoder("hf-clip", model=str(tiny_clip_dir))
    processor = AutoImageProcessor.from_pretrained(str(tiny_clip_dir))
    image = _images(1, seed=5)[0]  # 24 x 61: the shortest side is resized, then centre-cropped
    expected = processor(images=[image], return_tensors="np")["pixel_values"][0]
    got = encoder.prep(image)  # type: ignore[attr-defined]
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).mean()) < 0.02  # same recipe; resize kernels differ in rounding only


def test_open_clip_without_the_package_names_the_extra() -> None:
    if HAS_OPEN_CLIP:
        pytest.skip("open_clip is installed")
    from visrec.errors import MissingExtra

    with pytest.raises(MissingExtra, match="open_clip"):
        create_encoder("open-clip", model="ViT-B-32", pretrained="/nonexistent.pt")


def test_index_command_loads_a_local_hf_clip_checkpoint(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """`visrec index --encoder hf-clip --checkpoint DIR` builds an index with that model, and text search works."""
    from typer.testing import CliRunner

    from tests.fixtures_images import make_labeled_tree
    from visrec.cli import app

    make_labeled_tree(tmp_path / "data", ("red", "blue"), per_class=4, size=32)
    out = tmp_path / "clip.vrx"
    args = ["index", str(tmp_path / "data"), "--out", str(out), "--encoder", "hf-clip"]
    res = CliRunner().invoke(app, [*args, "--checkpoint", str(tiny_clip_dir), "--json"])
    assert res.exit_code == 0, res.output
    info = CliRunner().invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0 and "hf-clip" in info.output
    bad = CliRunner().invoke(app, [*args[:-1], "open-clip", "--checkpoint", "no-arch.pt"])
    assert bad.exit_code == 2 and "ARCH:FILE" in bad.output
