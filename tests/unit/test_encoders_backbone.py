"""The real CNN backbones: ONNX export vs torch (the conversion test), sane ImageNet predictions, and a
cache hit that never imports torch. Uses the real pretrained weights: marked slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.encoders import create_encoder
from visrec.encoders.backbone import BackboneEncoder
from visrec.encoders.bridge import imagenet_class_names

pytestmark = pytest.mark.slow
DATA = SHARED_DATA
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(params=["efficientnet-lite0", "mobilenet-v2"])
def backbone(request: pytest.FixtureRequest, session_cache: Path) -> BackboneEncoder:
    encoder = create_encoder(request.param, precision="f32")  # the conversion is checked at float32
    assert isinstance(encoder, BackboneEncoder)
    return encoder


def _photos(n: int) -> list[np.ndarray | Path]:
    found = sorted((DATA / "naruto_roboflow" / "images").glob("*/*.jpg"))[:n]
    if found:
        return list(found)
    rng = np.random.default_rng(0)  # no data folder: smooth random pictures still exercise the graph
    return [np.clip(rng.normal(120, 40, (90 + i, 70, 3)), 0, 255).astype(np.uint8) for i in range(n)]


def test_onnx_export_matches_torch(backbone: BackboneEncoder) -> None:
    import torch

    images = _photos(6)
    batch = backbone.prep.fill(images, np.empty((6, 3, backbone.input_size, backbone.input_size), np.float32))
    with torch.no_grad():
        feats, logits = backbone.build_torch()(torch.from_numpy(batch.copy()))
    onnx_feats, onnx_logits = backbone.session().run(None, {"image": batch})
    np.testing.assert_allclose(onnx_feats, feats.numpy(), atol=1e-4)
    np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-3 * float(logits.abs().max()))
    np.testing.assert_allclose(backbone.encode_images(images).vectors, feats.numpy(), atol=1e-4)


def test_imagenet_predictions_are_sane(backbone: BackboneEncoder) -> None:
    bus = DATA / "voc_labelme_mini" / "images" / "2011_000025.jpg"
    if not bus.is_file():
        pytest.skip(f"real data not found at {bus}")
    names = imagenet_class_names()
    logits = backbone.encode_logits([bus])[0]
    top3 = [names[i] for i in np.argsort(-logits)[:3]]
    assert "school bus" in top3, top3  # wrong colour order or normalisation breaks this first


def test_cache_hit_does_not_import_torch(backbone: BackboneEncoder, session_cache: Path) -> None:
    backbone.encode_images(_photos(1))  # makes sure the graph and the bridge's prompt vectors are cached
    code = (
        "import sys, numpy as np\n"
        "from visrec.encoders import create_encoder\n"
        f"enc = create_encoder({backbone.name!r})\n"
        "emb = enc.encode_images([np.zeros((50, 40, 3), np.uint8)])\n"
        "assert emb.joint is not None\n"
        "print('torch' in sys.modules)\n"
    )
    env = {"VISREC_CACHE_DIR": str(session_cache), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_prepared_default_models_run_without_torch(session_cache: Path) -> None:
    """The install script's export step: the default encoder, its text side and the bridge's class vectors land
    in the cache with their sha256; a process without torch then encodes images and texts from them."""
    from visrec.encoders.cache import sha256_file, sidecar
    from visrec.encoders.prepare import prepare_models

    (model,) = prepare_models()
    names = [f.path.name.rsplit("-", 1)[0] for f in model.files]
    assert names == ["efficientnet-lite0", "all-minilm-l6-v2", "imagenet-prompts"]
    for f in model.files:
        assert f.path.parent == session_cache and f.sha256 == sha256_file(f.path)
        assert f.path.suffix == ".npy" or sidecar(f.path).read_text().strip() == f.sha256
    code = (
        "import sys\nsys.modules['torch'] = None\nsys.modules['onnxscript'] = None\n"
        "import numpy as np\nfrom visrec.encoders import create_encoder\n"
        "enc = create_encoder('efficientnet-lite0')\n"
        "emb = enc.encode_images([np.zeros((50, 40, 3), np.uint8)])\n"
        "print(emb.vectors.shape[1], enc.encode_texts(['a photo of a cat']).shape[1])\n"
    )
    env = {"VISREC_CACHE_DIR": str(session_cache), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.split() == ["1472", "384"], out.stderr
