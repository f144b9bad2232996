"""Where the tests find the real data sets: ``shared/data`` beside the repository (``../shared/data``), or under the
folder named by ``VISREC_SHARED`` when that variable is set (a checkout elsewhere, e.g. a git worktree:
``VISREC_SHARED=/path/to/shared``). Tests that need a data set skip when it is not there, saying where they looked.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``$VISREC_SHARED/data`` when the variable is set, else ``../shared/data`` beside the repository."""
    env = os.environ.get("VISREC_SHARED")
    return (Path(env).expanduser() if env else REPO.parent / "shared") / "data"


SHARED_DATA = shared_data()
"""The folder holding naruto_roboflow, caltech101_dev, cifar10_subset, deepface_celebs, ... (may not exist)."""
