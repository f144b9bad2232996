"""Install advice in MissingExtra: extras that bring PyTorch point at its CPU wheel, not PyPI's CUDA build."""

from __future__ import annotations

from visrec.errors import MissingExtra


def test_torch_extras_name_the_cpu_wheel_and_the_install_script() -> None:
    msg = str(MissingExtra("pytorch-metric-learning", "train", "metric-learning fine-tuning"))
    assert "bash scripts/install.sh --extras train" in msg
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in msg
    assert "bash scripts/install.sh --all" in str(MissingExtra("torch", "all", "everything"))


def test_other_extras_keep_the_plain_pip_command() -> None:
    msg = str(MissingExtra("dlib", "faces", "face recognition"))
    assert msg.endswith("Install it with: pip install 'visrec[faces]'")
    assert "download.pytorch.org" not in msg
