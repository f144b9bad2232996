"""pyproject.toml's runtime dependencies are the packages visrec's own code uses: a package only tests use
belongs to the dev extra (``scripts/install.sh --dev``), not to every user's install."""

from __future__ import annotations

import re
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _project() -> dict:  # type: ignore[type-arg]
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]  # type: ignore[no-any-return]


def _dist(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_every_runtime_dependency_is_used_by_src() -> None:
    modules: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for d in dists:
            modules.setdefault(d.lower().replace("_", "-"), set()).add(module)
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "visrec").rglob("*.py"))
    unused = []
    for dist in map(_dist, _project()["dependencies"]):
        names = modules.get(dist)
        if not names:
            continue  # not installed here: nothing to check it against
        # an import, or a module located by name (weights packages found with importlib.util.find_spec)
        used = any(re.search(rf"^\s*(import|from)\s+{re.escape(m)}\b|[\"']{re.escape(m)}[\"']", code, re.M)
                   for m in names)  # fmt: skip
        if not used:
            unused.append(dist)
    assert not unused, f"runtime dependencies no module of src/visrec uses: {unused}; move them to the dev extra"


def test_test_only_packages_are_in_the_dev_extra() -> None:
    dev = {_dist(r) for r in _project()["optional-dependencies"]["dev"]}
    assert "imagehash" in dev  # tests/unit/test_data_hash.py checks the numpy hashes against it
