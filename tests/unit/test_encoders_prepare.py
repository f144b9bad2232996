"""Models prepared ahead of use (the install-time export) and what a process without PyTorch does with them:
runs a prepared model, and for a missing one says how to get it instead of failing on ``import torch``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.unit.tiny_backbone import tiny_encoder
from visrec.encoders.cache import sha256_file, sidecar
from visrec.encoders.onnx_export import ExportUnavailable, cached_onnx
from visrec.encoders.prepare import prepare_encoder, prepare_models
from visrec.errors import BadInput

REPO = Path(__file__).resolve().parents[2]
# Run in a child process where torch and onnxscript cannot be imported, as in the default install.
NO_TORCH = "import sys\nsys.modules['torch'] = None\nsys.modules['onnxscript'] = None\n"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("VISREC_CACHE_DIR", str(path))
    return path


def _without_torch(code: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {"VISREC_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'src'}"}
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, env=env, cwd=REPO)


def test_missing_export_without_torch_names_the_fix(_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    calls: list[Path] = []
    with pytest.raises(ExportUnavailable) as err:
        cached_onnx(_cache / "model-0123.onnx", calls.append)
    msg = str(err.value)
    assert not calls, "no export may start without torch"
    assert err.value.exit_code == 5 and "model-0123.onnx" in msg and str(_cache) in msg
    for fix in ("bash scripts/install.sh", "--extras export", "visrec prepare-models", "'torch'"):
        assert fix in msg, (fix, msg)


def test_a_converter_that_needs_no_torch_still_runs_without_it(_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    path = cached_onnx(_cache / "converted.onnx", lambda tmp: tmp.write_bytes(b"onnx bytes"), needs=())
    assert path.read_bytes() == b"onnx bytes" and sidecar(path).is_file()


def test_prepared_model_runs_without_torch_and_matches_torch(tmp_path: Path, _cache: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    encoder = tiny_encoder(tmp_path / "tiny.bin")
    first = prepare_encoder("tiny", encoder)
    (file,) = first.files
    assert file.path == encoder.onnx_path and file.created and file.path.parent == _cache
    assert file.sha256 == sha256_file(file.path) == sidecar(file.path).read_text().strip()
    again = prepare_encoder("tiny", tiny_encoder(tmp_path / "tiny.bin"))
    assert not again.files[0].created, "an intact prepared file is not exported again"

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    code = (
        "import numpy as np\nfrom pathlib import Path\nfrom tests.unit.tiny_backbone import tiny_encoder\n"
        f"enc = tiny_encoder(Path({str(tmp_path / 'tiny.bin')!r}))\n"
        f"v = enc.encode_images(list(np.load({str(tmp_path / 'images.npy')!r}))).vectors\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, v)\n"
    )
    run = _without_torch(code, _cache)
    assert run.returncode == 0, run.stderr
    batch = encoder.prep.fill(list(images), np.empty((3, 3, 32, 32), np.float32))
    with torch.no_grad():
        expected = encoder.build_torch()(torch.from_numpy(batch.copy()))[0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def test_unprepared_model_without_torch_fails_with_the_fix(tmp_path: Path, _cache: Path) -> None:
    code = (
        "import numpy as np\nfrom pathlib import Path\nfrom tests.unit.tiny_backbone import tiny_encoder\n"
        "from visrec.errors import MissingExtra\n"
        f"enc = tiny_encoder(Path({str(tmp_path / 'tiny.bin')!r}))\n"
        "try:\n    enc.encode_images([np.zeros((40, 40, 3), np.uint8)])\n"
        "except MissingExtra as e:\n    print(e.exit_code, e)\n"
    )
    run = _without_torch(code, _cache)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("5 ") and "prepare-models" in run.stdout and "tiny-" in run.stdout, run.stdout


def test_prepare_refuses_an_encoder_with_nothing_to_export() -> None:
    with pytest.raises(BadInput, match="no exported model to prepare"):
        prepare_models(["fake"])
