"""Clusters a person can fix: merge, split, move, rename, must-link / cannot-link, saved as JSON.

A :class:`Clustering` maps item ids to cluster names and keeps the list of manual edits in order. Re-clustering
(new photos, another method) starts from fresh automatic labels and :meth:`Clustering.reapply` replays the
edits, so a person's fixes survive. The file is plain JSON (``save`` / ``load`` round-trip exactly).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput

SCHEMA = 1
NOISE = "noise"
OPS = ("merge", "split", "move", "rename", "must_link", "cannot_link")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the numbers inside names by value: ``c2`` before ``c10``, ``noise`` after them."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def names_from_labels(labels: np.ndarray) -> list[str]:
    """Integer labels (``-1`` noise) as cluster names ``c0, c1, ...`` and ``noise``."""
    return [NOISE if int(x) < 0 else f"c{int(x)}" for x in labels]


@dataclass
class Clustering:
    """``assignment``: item id -> cluster name; ``edits``: manual fixes in the order made; ``info``: how it was made."""

    assignment: dict[str, str]
    edits: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_labels(ids: Sequence[str], labels: np.ndarray, info: dict[str, Any] | None = None) -> Clustering:
        """From automatic integer labels (see :func:`visrec.cluster.cluster`)."""
        if len(ids) != len(labels):
            raise BadInput(f"{len(ids)} ids but {len(labels)} labels")
        return Clustering(dict(zip(ids, names_from_labels(labels), strict=True)), [], dict(info or {}))

    def clusters(self) -> dict[str, list[str]]:
        """Cluster name -> item ids (clusters by decreasing size, items in insertion order)."""
        out: dict[str, list[str]] = {}
        for item, name in self.assignment.items():
            out.setdefault(name, []).append(item)
        return dict(sorted(out.items(), key=lambda kv: (-len(kv[1]), natural_key(kv[0]))))

    def _need_cluster(self, name: str) -> None:
        if name not in set(self.assignment.values()):
            raise BadInput(f"no cluster named {name!r}; known: {', '.join(sorted(set(self.assignment.values())))}")

    def _need_item(self, item: str) -> None:
        if item not in self.assignment:
            raise BadInput(f"no item {item!r} in this clustering")

    def _fresh_name(self) -> str:
        used = set(self.assignment.values())
        return next(f"c{i}" for i in range(len(used) + 1) if f"c{i}" not in used)

    def apply(self, op: str, **args: Any) -> None:
        """Apply one edit and record it. ``merge(a, b)``: b joins a; ``split(cluster, items)``: items leave for a
        new cluster; ``move(item, to)``; ``rename(cluster, name)``; ``must_link(a, b)``: item b joins a's
        cluster; ``cannot_link(a, b)``: item b leaves a's cluster when they share one."""
        if op not in OPS:
            raise BadInput(f"unknown cluster edit {op!r}; use one of {', '.join(OPS)}")
        getattr(self, f"_{op}")(**args)
        self.edits.append({"op": op, **args})

    def _merge(self, a: str, b: str) -> None:
        self._need_cluster(a)
        self._need_cluster(b)
        self.assignment = {k: (a if v == b else v) for k, v in self.assignment.items()}

    def _split(self, cluster: str, items: list[str], name: str | None = None) -> None:
        self._need_cluster(cluster)
        new = name or self._fresh_name()
        for item in items:
            self._need_item(item)
            if self.assignment[item] != cluster:
                raise BadInput(f"item {item!r} is in {self.assignment[item]!r}, not in {cluster!r}")
        for item in items:
            self.assignment[item] = new

    def _move(self, item: str, to: str) -> None:
        self._need_item(item)
        self.assignment[item] = to

    def _rename(self, cluster: str, name: str) -> None:
        self._need_cluster(cluster)
        self.assignment = {k: (name if v == cluster else v) for k, v in self.assignment.items()}

    def _must_link(self, a: str, b: str) -> None:
        self._need_item(a)
        self._need_item(b)
        self.assignment[b] = self.assignment[a]

    def _cannot_link(self, a: str, b: str) -> None:
        self._need_item(a)
        self._need_item(b)
        if self.assignment[a] == self.assignment[b]:
            self.assignment[b] = self._fresh_name()

    def reapply(self, edits: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replay saved edits on this (fresh) clustering; edits that no longer fit are skipped and returned."""
        skipped = []
        for e in edits:
            args = {k: v for k, v in e.items() if k != "op"}
            try:
                self.apply(str(e.get("op")), **args)
            except (BadInput, TypeError):
                skipped.append(dict(e))
        return skipped

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"schema": SCHEMA, "info": self.info, "clusters": self.clusters(), "edits": self.edits}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Clustering:
        """Inverse of :meth:`to_dict`."""
        if data.get("schema") != SCHEMA:
            raise BadInput(f"clusters file schema {data.get('schema')!r} is not {SCHEMA}; re-run `visrec cluster`")
        assignment = {item: name for name, items in data["clusters"].items() for item in items}
        return Clustering(assignment, list(data.get("edits", [])), dict(data.get("info", {})))

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @staticmethod
    def load(path: str | Path) -> Clustering:
        """Read a file written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise BadInput(f"{p}: no clusters file; create one with `visrec cluster DIR --out {p}`")
        return Clustering.from_dict(json.loads(p.read_text()))
