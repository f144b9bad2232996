"""Inference precision: bfloat16 where the CPU computes it natively, float32 elsewhere; the precision a session
runs is read back from the runtime, and it is part of the encoder identity (bf16 vectors are close to float32
ones, not interchangeable), so an index reopens at the precision it was built with or is refused with the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from visrec.encoders import runtime
from visrec.encoders.runtime import precision_name
from visrec.errors import BadInput, ManifestMismatch


def test_precision_follows_the_cpu_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISREC_PRECISION", raising=False)
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert precision_name("openvino") == "f32"  # the default: indexes open on every machine
    monkeypatch.setenv("VISREC_PRECISION", "auto")
    assert precision_name("openvino") == "bf16"
    assert precision_name("onnxruntime") == "f32"  # ONNX Runtime has no bfloat16 CPU path
    monkeypatch.setenv("VISREC_PRECISION", "F32")
    assert precision_name("openvino") == "f32"
    assert precision_name("openvino", "bf16") == "bf16"  # an explicit choice (an index's record) wins
    monkeypatch.setenv("VISREC_PRECISION", "int4")
    with pytest.raises(BadInput, match="int4"):
        precision_name("openvino")
    with pytest.raises(BadInput, match="VISREC_RUNTIME=openvino"):
        precision_name("onnxruntime", "bf16")
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    monkeypatch.setenv("VISREC_PRECISION", "auto")
    assert precision_name("openvino") == "f32"
    with pytest.raises(BadInput, match="no native bfloat16"):
        precision_name("openvino", "bf16")


def test_recorded_precision_of_backbones_ensembles_and_old_records() -> None:
    from visrec.encoders.runtime import recorded_precision

    bf16, f32 = {"options": {"precision": "bf16"}}, {"options": {"precision": "f32"}}
    assert recorded_precision(bf16) == "bf16" and recorded_precision(f32) == "f32"
    assert recorded_precision({"options": {"model": "ViT-B-32"}}) == "f32"  # CLIP, fake, records before precisions
    assert recorded_precision({"members": [bf16, bf16]}) == "bf16"
    assert recorded_precision({"members": [f32, bf16]}) == "bf16+f32"


def test_encoder_mismatch_names_the_precision_when_it_differs(tmp_path: Path) -> None:
    from visrec.index.folder import IndexFolder

    info = {"name": "efficientnet-lite0", "fingerprint": "eff-bf16", "describe": {"options": {"precision": "bf16"}}}
    folder = IndexFolder.create(tmp_path / "x.vrx", encoder_info=info, dim=8, joint_dim=None, backend="exact")
    folder.check_encoder("eff-bf16", "efficientnet-lite0", "bf16")
    with pytest.raises(ManifestMismatch, match=r"at precision bf16, but the encoder given runs at f32.*"
                       r"Leave out --encoder.*VISREC_PRECISION=bf16"):  # fmt: skip
        folder.check_encoder("eff-f32", "efficientnet-lite0", "f32")
    with pytest.raises(ManifestMismatch, match="weights or preprocessing changed"):  # same precision: not the cause
        folder.check_encoder("eff-other", "efficientnet-lite0", "bf16")


def _net(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    from visrec.encoders.onnx_export import export_module

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, stride=2), torch.nn.ReLU6(), torch.nn.Conv2d(32, 64, 3), torch.nn.Flatten(1)
    ).eval()
    path = tmp_path / "net.onnx"
    export_module(net, [torch.rand(2, 3, 24, 24)], path, ["image"], ["features"], {"image": {0: "batch"}})
    return path


def test_openvino_session_runs_the_precision_it_reports(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from visrec.encoders.runtime import OpenVinoSession, cpu_has_bf16, create_image_session

    path = _net(tmp_path)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 24, 24)).astype(np.float32)
    f32 = create_image_session(path, threads=1, streams=2, runtime="openvino", precision="f32")
    assert isinstance(f32, OpenVinoSession) and f32.precision == "f32"
    ref = create_image_session(path, runtime="onnxruntime").run(None, {"image": x})[0]
    np.testing.assert_allclose(f32.run(None, {"image": x})[0], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(BadInput, match="float32 only"):
        create_image_session(path, runtime="onnxruntime", precision="bf16")
    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16")
    bf16 = create_image_session(path, threads=1, streams=2, runtime="openvino", precision="bf16")
    assert isinstance(bf16, OpenVinoSession) and bf16.precision == "bf16"
    got = bf16.run(None, {"image": x})[0]
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.98  # the same function, rounded to bfloat16 on the way
    assert np.abs(got - ref).max() > 1e-4  # and really computed in bfloat16, not float32


# ---- real weights ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_precision_is_part_of_the_encoder_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from visrec.encoders import create_encoder, encoder_from_info
    from visrec.errors import MissingWeights

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    monkeypatch.setenv("VISREC_RUNTIME", "openvino")
    monkeypatch.setenv("VISREC_PRECISION", "auto")
    try:
        bf16: Any = create_encoder("efficientnet-lite0", bridge=False)
    except MissingWeights as exc:
        pytest.skip(str(exc))
    f32: Any = create_encoder("efficientnet-lite0", bridge=False, precision="f32")
    assert bf16.precision == "bf16" and f32.precision == "f32"
    assert bf16.fingerprint != f32.fingerprint
    info = bf16.describe()
    assert info["options"]["precision"] == "bf16"
    monkeypatch.setenv("VISREC_PRECISION", "f32")  # the index's record wins over the environment
    assert encoder_from_info(info).fingerprint == bf16.fingerprint
    old = f32.describe()
    del old["options"]["precision"]  # an index recorded before precisions existed ran float32
    monkeypatch.delenv("VISREC_PRECISION")
    assert encoder_from_info(old).fingerprint == f32.fingerprint
    monkeypatch.setenv("VISREC_RUNTIME", "onnxruntime")
    assert encoder_from_info(f32.describe()).fingerprint == f32.fingerprint
    with pytest.raises(BadInput, match="rebuild the index with VISREC_PRECISION=f32"):
        encoder_from_info(info)


@pytest.mark.slow
def test_an_index_reopens_at_its_precision_and_refuses_the_other(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from visrec.data import load_dataset
    from visrec.encoders import create_encoder
    from visrec.errors import MissingWeights
    from visrec.index import Index
    from visrec.index.pipeline import IndexConfig
    from visrec.index.writer import build_index

    if not runtime.cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16")
    rng = np.random.default_rng(0)
    for i in range(4):
        (tmp_path / "data" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "data" / f"c{i % 2}/{i}.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISREC_RUNTIME", "openvino")
        try:
            bf16: Any = create_encoder("efficientnet-lite0", bridge=False, precision="bf16")
        except MissingWeights as exc:
            pytest.skip(str(exc))
        f32 = create_encoder("efficientnet-lite0", bridge=False, precision="f32")
        build_index(load_dataset(tmp_path / "data"), tmp_path / "x.vrx", bf16, IndexConfig(calibrate=False))
        mp.setenv("VISREC_PRECISION", "f32")
        reopened: Any = Index(tmp_path / "x.vrx").encoder
        assert reopened.precision == "bf16" and reopened.fingerprint == bf16.fingerprint
        assert Index(tmp_path / "x.vrx").info()["precision"] == "bf16"
        with pytest.raises(ManifestMismatch, match="at precision bf16, but the encoder given runs at f32"):
            Index(tmp_path / "x.vrx", encoder=f32)
        mp.setenv("VISREC_RUNTIME", "onnxruntime")
        with pytest.raises(BadInput, match="bfloat16"):
            _ = Index(tmp_path / "x.vrx").encoder
