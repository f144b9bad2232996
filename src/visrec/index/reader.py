"""An index folder opened for use: search by image or text, classify with an honest "unknown", calibrate.

An ``Index`` is read-only; :func:`visrec.index.writer.build_index` writes one. Files of a generation:
``store/`` (image-space vectors + metadata), ``joint/`` (vectors in the text-shared space, when the encoder has
one), ``prototypes.npy`` + ``prototypes.json`` (class means) and ``calibration.json`` (one entry per mode).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visrec.encoders.base import Encoder, ImageLike, TextEncoder
from visrec.errors import BadInput, ManifestMismatch, NotCalibrated, VisrecError
from visrec.index.recognize import MODES  # noqa: F401  (re-exported)
from visrec.types import Embeddings, Hit, Prediction


@dataclass(frozen=True)
class TextSearchResult:
    """Hits for a text query and how they were found.

    ``route`` is ``"labels"`` when the query matched the index's label names (``matched`` lists the names and
    their text similarity) or ``"joint"`` when it was searched in the encoder's image-text space.
    """

    query: str
    route: str
    matched: tuple[tuple[str, float], ...]
    hits: tuple[Hit, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "route": self.route,
            "matched_labels": [[n, round(s, 4)] for n, s in self.matched],
            "hits": [h.to_dict() for h in self.hits],
        }


def _hits(ids: np.ndarray, scores: np.ndarray, metas: dict[str, dict[str, Any]]) -> list[Hit]:
    out = []
    for i, s in zip(ids, scores, strict=True):
        if i == "":
            continue
        m = metas[str(i)]
        out.append(Hit(str(i), float(s), m["path"], tuple(m.get("labels", [])), m.get("split")))
    return out


class Index:
    """A built index, opened read-only. Cheap to open: vectors are memory-mapped, the encoder loads lazily."""

    def __init__(self, path: str | Path, encoder: Encoder | None = None, mmap: bool = True) -> None:
        from visrec.index.folder import IndexFolder
        from visrec.stores import load_store

        self.folder = IndexFolder.open(path)
        gen = self.folder.generation_dir
        if gen is None:
            raise BadInput(f"{path}: the index is empty; add images with: visrec index DATASET --out {path}")
        self.gen = gen
        backend = self.folder.manifest.store
        self.store = load_store(backend, gen / "store", mmap=mmap)
        self.joint = load_store(backend, gen / "joint", mmap=mmap) if (gen / "joint").exists() else None
        self._encoder = encoder
        if encoder is not None:
            self.check_encoder(encoder)
        self._text_encoder: TextEncoder | None = None
        self._calibration: dict[str, Any] | None = None
        self._metas: dict[str, dict[str, Any]] | None = None
        self._classifiers: dict[tuple[Any, ...], Any] = {}

    # ----------------------------------------------------------------- facts
    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def encoder_info(self) -> dict[str, Any]:
        return dict(self.folder.manifest.encoder)

    def file_of(self, hit: Hit) -> Path | None:
        """The image file of a hit, when the dataset it came from is still where it was indexed."""
        root = self.folder.manifest.extra.get("dataset_root")
        if Path(hit.path).is_absolute():
            p = Path(hit.path)
        elif not root or hit.path.startswith("upload/"):
            return None
        else:
            p = Path(root) / hit.path
        return p if p.is_file() else None

    def check_encoder(self, encoder: Encoder) -> None:
        """Raise ManifestMismatch unless ``encoder`` is the one that built this index."""
        self.folder.check_encoder(encoder.fingerprint, encoder.name)

    @property
    def encoder(self) -> Encoder:
        """The encoder recorded in the manifest, built on first use."""
        if self._encoder is None:
            from visrec.encoders import encoder_from_info

            enc = encoder_from_info(self.encoder_info.get("describe", {}))
            self.check_encoder(enc)
            self._encoder = enc
        return self._encoder

    def metadata(self) -> dict[str, dict[str, Any]]:
        """Metadata of every item, by id (loaded once)."""
        if self._metas is None:
            metas: dict[str, dict[str, Any]] = {}
            for ids, _, ms in self.store.export():
                metas.update(zip(ids, ms, strict=True))
            self._metas = metas
        return self._metas

    def labels(self) -> dict[str, int]:
        """Images per label."""
        from visrec.index.pipeline import count_labels

        return count_labels(list(self.metadata().values()))

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, encoder, store, calibration."""
        m = self.folder.manifest
        cal = self.calibration_data()
        return {
            "path": str(self.path),
            "count": self.store.count(),
            "labels": self.labels(),
            "unlabeled": sum(1 for x in self.metadata().values() if not x.get("labels")),
            "encoder": {k: v for k, v in m.encoder.items() if k != "describe"} | m.encoder.get("describe", {}),
            "dim": m.dim,
            "joint_dim": m.joint_dim,
            "store": m.store,
            "generation": m.generation,
            "updated": m.updated,
            "calibrated_modes": sorted(cal),
            "calibration": {k: _cal_summary(v) for k, v in cal.items()},
        }

    # ---------------------------------------------------------------- search
    def encode(self, images: Sequence[ImageLike], progress: bool = False) -> Embeddings:
        """Encode query images with the index's encoder."""
        return self.encoder.encode_images(images, progress=progress)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, where: str | None = None) -> list[list[Hit]]:
        """Top-``k`` hits per query vector ``(q, dim)`` in the image space."""
        nb = self.store.search(vectors, k, where)
        metas = self.metadata()
        return [_hits(nb.ids[i], nb.scores[i], metas) for i in range(len(nb.ids))]

    def search_images(self, images: Sequence[ImageLike], k: int = 10, where: str | None = None) -> list[list[Hit]]:
        """Image -> image search: top-``k`` hits per query image."""
        return self.search_vectors(self.encode(images).vectors, k, where)

    def text_encoder(self) -> TextEncoder:
        """The sentence encoder that matches free text against label names (MiniLM)."""
        if self._text_encoder is None:
            from visrec.encoders import create_text_encoder

            self._text_encoder = create_text_encoder()
        return self._text_encoder

    def match_labels(self, query: str, min_similarity: float = 0.6) -> list[tuple[str, float]]:
        """Label names whose text similarity to ``query`` is at least ``min_similarity``, best first.

        A case-insensitive exact match (or the query naming the label as a word) scores 1.0.
        """
        names = list(self.labels())
        if not names:
            return []
        q = query.strip().lower()
        words = set(q.replace(",", " ").split())
        te = self.text_encoder()
        sims = te.encode(names) @ te.encode([query])[0]
        scored = [
            (n, 1.0 if n.lower() == q or n.lower() in words else float(s)) for n, s in zip(names, sims, strict=True)
        ]
        best = max(s for _, s in scored)
        keep = [(n, s) for n, s in scored if s >= min_similarity and s >= best - 0.05]
        return sorted(keep, key=lambda x: -x[1])

    def search_text(self, query: str, k: int = 10, where: str | None = None, route: str = "auto") -> TextSearchResult:
        """Text -> image search.

        ``route="labels"``: the query is matched against label names (MiniLM similarity) and the images of the
        matched labels are returned, most typical first (closest to the label's mean vector). ``"joint"``: the
        query is encoded by the encoder's text side and searched among the images' joint vectors (a CLIP model,
        or the default encoder's ImageNet-label bridge, which knows everyday objects, not character names).
        ``"auto"``: labels when a label name matches, else joint.
        """
        if route not in ("auto", "labels", "joint"):
            raise BadInput(f"route must be auto, labels or joint, got {route!r}")
        matched = self.match_labels(query) if route in ("auto", "labels") else []
        if matched:
            return TextSearchResult(query, "labels", tuple(matched), tuple(self._label_hits(matched, k, where)))
        if route == "labels":
            return TextSearchResult(query, "labels", (), ())
        if self.joint is None:
            raise VisrecError(
                f"no label of this index matches {query!r} and its encoder "
                f"({self.encoder_info.get('name')}) has no text side; try one of: {', '.join(self.labels())}"
            )
        q = self.encoder.encode_texts([query])
        nb = self.joint.search(q, k, where)
        return TextSearchResult(query, "joint", (), tuple(_hits(nb.ids[0], nb.scores[0], self.metadata())))

    def _label_hits(self, matched: list[tuple[str, float]], k: int, where: str | None) -> list[Hit]:
        protos, classes = self.prototypes()
        hits: list[Hit] = []
        for name, _ in matched:
            cond = f"label == {json.dumps(name)}"
            cond = cond if where is None else f"({cond}) and ({where})"
            hits += self.search_vectors(protos[classes.index(name)][None, :], k, cond)[0]
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    # -------------------------------------------------------------- classify
    def prototypes(self) -> tuple[np.ndarray, list[str]]:
        """Class mean vectors ``(c, dim)`` and their class names, as saved at build time."""
        p = self.gen / "prototypes.npy"
        if not p.exists():
            return np.zeros((0, self.store.dim), np.float32), []
        classes = json.loads((self.gen / "prototypes.json").read_text())["classes"]
        return np.load(p, allow_pickle=False), list(classes)

    def calibration_data(self) -> dict[str, Any]:
        """The stored calibrations, by mode (empty when never calibrated)."""
        if self._calibration is None:
            p = self.gen / "calibration.json"
            self._calibration = json.loads(p.read_text()) if p.exists() else {}
        return self._calibration

    def calibration(self, mode: str) -> Any:
        """The :class:`visrec.classify.Calibration` of ``mode``, or None."""
        from visrec.classify import Calibration

        data = self.calibration_data().get(mode)
        return None if data is None else Calibration.from_dict(data)

    def classifier(self, mode: str = "knn", k: int | None = None, classes: Sequence[str] | None = None) -> Any:
        """The classifier of ``mode`` set up from this index (stored options unless overridden)."""
        from visrec.index.recognize import make_classifier

        key = (mode, k, tuple(classes) if classes else None)
        if key in self._classifiers:
            return self._classifiers[key]
        cal = self.calibration(mode)
        params = dict(cal.params) if cal is not None else {}
        if k is not None and mode == "knn":
            params["k"] = k
        clf = make_classifier(self, mode, params, classes)
        self._classifiers[key] = clf  # zero-shot/blend classifiers hold encoded prompts: build them once
        return clf

    def classify(
        self,
        images: Sequence[ImageLike] | Embeddings,
        mode: str = "knn",
        k: int | None = None,
        calibrated: bool = True,
        classes: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """Classify images (or their embeddings) against the index.

        With ``calibrated`` (default) and a stored calibration, predictions carry a calibrated confidence and
        fall to unknown (``label=None``) below their class threshold; without calibration data they are raw.
        ``classes`` (zero-shot/blend): class names to score instead of the index's labels.
        """
        from visrec.index.recognize import predict

        emb = images if isinstance(images, Embeddings) else self.encode(images)
        if emb.encoder_id != self.encoder_info.get("fingerprint"):
            raise ManifestMismatch(
                f"query embeddings come from encoder {emb.encoder_id}, the index from "
                f"{self.encoder_info.get('fingerprint')}; encode queries with the index's encoder"
            )
        preds = predict(self, self.classifier(mode, k, classes), emb, mode)
        cal = self.calibration(mode) if calibrated and classes is None else None
        if calibrated and cal is None and classes is None and not self.calibration_data():
            raise NotCalibrated(
                f"{self.path} has no calibration; run: visrec calibrate {self.path}  (or pass calibrated=False)"
            )
        if cal is not None and k is not None and cal.params.get("k", k) != k:
            raise BadInput(
                f"the {mode} calibration of {self.path} was fitted with k={cal.params.get('k')}; thresholds do "
                f"not transfer to k={k}: drop -k, classify uncalibrated (--raw), or recalibrate with that k"
            )
        return preds if cal is None else cal.apply(preds)


def _cal_summary(d: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "method",
        "target_precision",
        "precision",
        "coverage",
        "unknown_rejected",
        "target_met",
        "n_held_out",
    )
    return {k: d.get(k) for k in keys}
