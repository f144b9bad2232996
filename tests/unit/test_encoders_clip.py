"""CLIP loaders: clear errors for missing checkpoints and missing packages (the happy path is in the
contract tests, on a tiny random checkpoint)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from visrec.encoders import create_encoder
from visrec.errors import BadInput, MissingExtra


def test_missing_folder_is_bad_input(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(BadInput, match="does not exist"):
        create_encoder("hf-clip", model=str(tmp_path / "nope"))


def test_folder_without_config_is_bad_input(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(BadInput, match=r"config\.json"):
        create_encoder("hf-clip", model=str(tmp_path))


def test_model_id_not_in_the_local_cache_is_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BadInput, match="never downloads"):
        create_encoder("hf-clip", model="openai/clip-vit-base-patch32")


def test_without_transformers_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(MissingExtra, match=r"visrec\[clip\]"):
        create_encoder("hf-clip", model="anything")


def test_open_clip_needs_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(MissingExtra, match="open_clip"):
        create_encoder("open-clip", model="ViT-B-32", pretrained="/no/such/file.pt")
