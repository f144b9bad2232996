"""The speed benchmark's PyTorch baseline is the fair one: its settings are really applied (no timings here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures_images import noise_image

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
fair_baseline = pytest.importorskip("fair_baseline")
indexing_speed = pytest.importorskip("indexing_speed")


class _Recorder(torch.nn.Module):
    """Mean colour per image; records the batch sizes and whether inference mode was on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool, int]] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        self.seen.append((int(x.shape[0]), torch.is_inference_mode_enabled(), torch.get_num_threads()))
        return (x.mean(dim=(2, 3)),)


def _jpegs(folder: Path, n: int, side: int = 640) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        Image.fromarray(noise_image(side, seed=i)).save(folder / f"{i}.jpg", quality=90)
        files.append(folder / f"{i}.jpg")
    return files


def test_baseline_runs_batched_in_inference_mode_with_its_threads(tmp_path: Path) -> None:
    cfg = fair_baseline.FairBaseline(batch=4, threads=1, workers=(0,))
    model = _Recorder()
    before = torch.get_num_threads()
    try:
        res = fair_baseline.embed_folder(model, _jpegs(tmp_path, 6), 32, cfg, workers=0)
    finally:
        torch.set_num_threads(before)
    assert [s[0] for s in model.seen] == [4, 2] and res["batches"] == [4, 2]
    assert all(mode and threads == 1 for _, mode, threads in model.seen)
    assert res["features"].shape == (6, 3)
    assert res["settings"]["inference_mode"] and res["settings"]["torch_threads"] == 1


def test_baseline_drafts_jpegs_and_keeps_the_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import JpegImagePlugin

    (path,) = _jpegs(tmp_path, 1)
    calls: list[Any] = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self: Any, mode: Any, size: Any) -> Any:
        calls.append(size)
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = fair_baseline.load_input(path, 64, draft=True)
    full = fair_baseline.load_input(path, 64, draft=False)
    assert calls == [(64, 64)] and fast.shape == full.shape == (3, 64, 64)
    assert float(np.abs(fast - full).mean()) < 0.05  # the same picture, decoded at a reduced DCT scale


def test_baseline_process_gets_the_tuned_allocator() -> None:
    env = indexing_speed.part_env("fair")
    cfg = fair_baseline.FairBaseline()
    assert env["MALLOC_MMAP_THRESHOLD_"] == cfg.malloc["MALLOC_MMAP_THRESHOLD_"]
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) <= 32 * 1024 * 1024  # glibc ignores larger values on 64-bit
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) >= int(env["MALLOC_MMAP_THRESHOLD_"])
    assert cfg.batch > 1 and cfg.threads >= 1 and cfg.draft


def test_baseline_tries_bf16_autocast_and_reports_it(tmp_path: Path) -> None:
    seen: list[bool] = []

    class _Autocast(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
            return (torch.nn.functional.linear(x.mean(dim=(2, 3)), torch.eye(3)),)

    cfg = fair_baseline.FairBaseline(batch=4, threads=1, workers=(0,))
    assert "bf16" in cfg.precisions and "f32" in cfg.precisions
    before = torch.get_num_threads()
    try:
        res = fair_baseline.embed_folder(_Autocast(), _jpegs(tmp_path, 5), 32, cfg, workers=0, precision="bf16")
        plain = fair_baseline.embed_folder(_Autocast(), _jpegs(tmp_path, 5), 32, cfg, workers=0)
    finally:
        torch.set_num_threads(before)
    assert seen == [True, True, False, False]
    assert res["settings"]["autocast_bf16"] and not plain["settings"]["autocast_bf16"]
    assert res["features"].dtype == np.float32 and res["precision"] == "bf16"
    np.testing.assert_allclose(res["features"], plain["features"], atol=0.02)  # linear ran in bf16
