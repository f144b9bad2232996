"""``manifest.json`` of an index folder: what built the index and which generation is current."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from visrec.errors import BadInput, IndexCorrupt, ManifestMismatch

FORMAT = "visrec-index"
SCHEMA_VERSION = 2
"""2: a generation's ``store/`` may hold segments (``segments.json``, see :mod:`visrec.stores.segmented`); 1: one
store per generation. Version 1 folders are read as they are (their store opens as one segment) and written as
version 2 by their next commit."""
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``. ``generation`` 0 means nothing has been committed yet."""

    encoder: dict[str, Any]
    dim: int
    joint_dim: int | None
    store: str
    count: int = 0
    generation: int = 0
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)
    normalization: str = "l2"
    schema_version: int = SCHEMA_VERSION
    format: str = FORMAT

    @property
    def encoder_name(self) -> str:
        return str(self.encoder.get("name", ""))

    @property
    def encoder_fingerprint(self) -> str:
        return str(self.encoder.get("fingerprint", ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, ``format`` and ``schema_version`` first."""
        d = asdict(self)
        head = {"format": d.pop("format"), "schema_version": d.pop("schema_version")}
        return {**head, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Manifest:
        """Validate a parsed manifest: ``BadInput`` if not an index's, ``IndexCorrupt`` if broken."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise BadInput(f"{where} is not a visrec index manifest (format {got!r}, expected {FORMAT!r})")
        version = d.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ManifestMismatch(
                f"{where} has schema version {version}, this visrec reads up to {SCHEMA_VERSION}: upgrade visrec"
            )
        try:
            m = cls(**{k: d[k] for k in d if k in cls.__dataclass_fields__})
            check_manifest(m)
        except (TypeError, ValueError) as e:
            raise IndexCorrupt(f"{where} is damaged ({e}); restore it from a backup or re-index") from None
        return m


def check_manifest(m: Manifest) -> None:
    def is_int(v: Any, minimum: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= minimum

    if m.schema_version not in READABLE_VERSIONS:
        raise ValueError(f"schema_version {m.schema_version!r}")
    if not isinstance(m.encoder, dict) or not m.encoder_fingerprint or not m.encoder_name:
        raise ValueError("encoder must be a dict with 'name' and 'fingerprint'")
    if not (is_int(m.dim, 1) and is_int(m.count, 0) and is_int(m.generation, 0)):
        raise ValueError(f"dim={m.dim!r}, count={m.count!r}, generation={m.generation!r}")
    if m.joint_dim is not None and not is_int(m.joint_dim, 1):
        raise ValueError(f"joint_dim={m.joint_dim!r}")
    if not isinstance(m.store, str) or not isinstance(m.extra, dict):
        raise ValueError("store must be a string and extra a dict")


def read_manifest(path: Path) -> Manifest:
    mpath = path / MANIFEST
    if not mpath.is_file():
        if any(p.name.startswith("gen-") and p.is_dir() for p in path.iterdir()):
            raise IndexCorrupt(
                f"{path} holds index data but no manifest.json; restore the folder from a backup or re-index"
            )
        raise BadInput(f"{path} is not a visrec index (no {MANIFEST}); build an index there first")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise IndexCorrupt(f"{mpath} cannot be read ({e}); restore it from a backup or re-index") from None
    return Manifest.from_dict(data, str(mpath))
