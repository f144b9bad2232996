"""An index folder opened for use: search by image or text, classify with an honest "unknown", calibrate.

An ``Index`` is read-only; :func:`visrec.index.writer.build_index` writes one. Files of a generation:
``store/`` (image-space vectors + metadata), ``joint/`` (vectors in the text-shared space, when the encoder has
one), ``prototypes.npy`` + ``prototypes.json`` (class means) and ``calibration.json`` (one entry per mode).

Each query reads one pinned generation (a :class:`~visrec.index.snapshot.Snapshot`). Before a query the index
checks ``manifest.json`` (one ``stat``) and, when a writer has committed, moves to the new generation; queries
already running finish on the old one, whose files stay until its last reader lets go.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visrec.encoders.base import Encoder, ImageLike, TextEncoder
from visrec.encoders.runtime import recorded_precision
from visrec.errors import BadInput, IndexCorrupt, ManifestMismatch, NotCalibrated, VisrecError
from visrec.index import text_search
from visrec.index.folder import IndexFolder
from visrec.index.recognize import AUTO, MODES, knn_metric  # noqa: F401  (re-exported)
from visrec.index.rerank import rerank_search
from visrec.index.snapshot import Snapshot, manifest_signature
from visrec.index.text_search import TextSearchResult
from visrec.npyio import load_npz
from visrec.stores import VectorStore
from visrec.types import Embeddings, Hit, Prediction

if TYPE_CHECKING:
    from visrec.classify import ClassNames

log = logging.getLogger(__name__)


class Index:
    """A built index, opened read-only. Cheap to open: vectors are memory-mapped, the encoder loads lazily.

    Follows the folder: a generation committed by any writer is picked up before the next query.
    """

    def __init__(self, path: str | Path, encoder: Encoder | None = None, mmap: bool = True) -> None:
        self.folder = IndexFolder.open(path)
        self._mmap = mmap
        self._encoder = encoder
        self._encoder_given = encoder is not None
        if encoder is not None:
            self.check_encoder(encoder)
        self._text_encoder: TextEncoder | None = None
        self._swap = threading.Lock()
        self._sig = manifest_signature(self.folder.path)
        self._snap = Snapshot(self.folder, self._encoder_of_this(), mmap)

    # ------------------------------------------------------------- snapshots
    def snapshot(self) -> Snapshot:
        """The generation the next query reads: the newest committed one (checked with one ``stat``)."""
        sig = manifest_signature(self.folder.path)
        if sig == self._sig or sig is None:
            return self._snap
        with self._swap:
            if sig != self._sig:
                self._move_to_newest(sig)
        return self._snap

    def _move_to_newest(self, sig: tuple[int, int, int]) -> None:
        try:
            manifest = self.folder.refresh()
            if manifest.generation != self._snap.generation:
                if manifest.encoder_fingerprint != self._snap.manifest.encoder_fingerprint:
                    if self._encoder_given:
                        self.check_encoder(self._encoder)  # type: ignore[arg-type]  # raises ManifestMismatch
                    self._encoder = None
                self._snap = Snapshot(self.folder, self._encoder_of_this(), self._mmap)
            self._sig = sig
        except (VisrecError, OSError) as e:  # keep answering from the pinned generation; retry next query
            log.warning("%s: staying on generation %d (%s)", self.path, self._snap.generation, e)

    def _encoder_of_this(self) -> Callable[[], Encoder]:
        """``self.encoder`` without a reference cycle (a snapshot's lease goes as soon as it is dropped)."""
        ref = weakref.ref(self)

        def encoder() -> Encoder:
            idx = ref()
            if idx is None:
                raise VisrecError("the Index this snapshot belongs to was closed")
            return idx.encoder

        return encoder

    def close(self) -> None:
        """Let go of the pinned generation (its files may then be deleted by the next writer)."""
        self._snap.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- facts
    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def store(self) -> VectorStore:
        """Image-space vectors + metadata of the current generation."""
        return self.snapshot().store

    @property
    def joint(self) -> VectorStore | None:
        """Joint (text-shared) vectors of the current generation, when the encoder has a text side."""
        return self.snapshot().joint

    @property
    def gen(self) -> Path:
        """Folder of the generation being read."""
        return self.snapshot().gen

    @property
    def encoder_info(self) -> dict[str, Any]:
        return self.snapshot().encoder_info

    def file_of(self, hit: Hit) -> Path | None:
        """The image file of a hit, when the dataset it came from is still where it was indexed."""
        root = self.snapshot().manifest.extra.get("dataset_root")
        if Path(hit.path).is_absolute():
            p = Path(hit.path)
        elif not root or hit.path.startswith("upload/"):
            return None
        else:
            p = Path(root) / hit.path
        return p if p.is_file() else None

    def check_encoder(self, encoder: Encoder) -> None:
        """Raise ManifestMismatch unless ``encoder`` is the one that built this index."""
        self.folder.check_encoder(encoder.fingerprint, encoder.name, recorded_precision(encoder.describe()))

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
        """Metadata of every item, by id (loaded once per generation)."""
        return self.snapshot().metadata()

    def metadata_of(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Metadata of the given ids, by id (looked up, not loaded for every item)."""
        return self.snapshot().metadata_of(ids)

    def labels(self, snap: Snapshot | None = None) -> dict[str, int]:
        """Images per label."""
        from visrec.index.pipeline import count_labels

        return count_labels(list((snap or self.snapshot()).metadata().values()))

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, encoder, the precision it ran at (``"f32"`` | ``"bf16"``), store,
        calibration."""
        s = self.snapshot()
        m = s.manifest
        cal = s.calibration_data()
        return {
            "path": str(self.path),
            "count": s.store.count(),
            "labels": self.labels(s),
            "unlabeled": sum(1 for x in s.metadata().values() if not x.get("labels")),
            "encoder": {k: v for k, v in m.encoder.items() if k != "describe"} | m.encoder.get("describe", {}),
            "precision": recorded_precision(m.encoder.get("describe") or {}),
            "dim": m.dim,
            "joint_dim": m.joint_dim,
            "store": m.store,
            "generation": m.generation,
            "updated": m.updated,
            "calibrated_modes": sorted(cal),
            "calibration": {k: _cal_summary(v) | self._trade_off(k) for k, v in cal.items()},
            "knn_metric": {"metric": self.classifier("knn", snap=s).config.metric} | _whitening_summary(s.gen),
        }

    def _trade_off(self, mode: str) -> dict[str, Any]:
        """Held-out precision / coverage at a few targets (only for calibrations with an open-set decision)."""
        cal = self.calibration(mode)
        if cal is None or cal.decision is None:
            return {}
        pts = []
        for t in sorted({0.8, 0.9, 0.95, 0.99, cal.target_precision}):
            op = cal.operating_point(t)
            pts.append({"target": t, "precision": op.precision, "coverage": op.coverage,
                        "novel_rejected": op.novel_rejected})  # fmt: skip
        return {"trade_off": pts}

    # ---------------------------------------------------------------- search
    def encode(self, images: Sequence[ImageLike], progress: bool = False) -> Embeddings:
        """Encode query images with the index's encoder."""
        return self.encoder.encode_images(images, progress=progress)

    def search_vectors(
        self, vectors: np.ndarray, k: int = 10, where: str | None = None, rerank: bool = True
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query vector ``(q, dim)`` in the image space.

        ``rerank`` (default): candidates re-ranked in the index's centred space with query expansion
        (:mod:`visrec.index.rerank`; ``score`` is the cosine there); False: the store's plain cosine order.
        """
        s = self.snapshot()
        hits = rerank_search(s, vectors, k, where) if rerank else s.search(vectors, k, where)
        if where and not any(hits) and s.metadata():
            self._check_filter_fields(s, where)
        return hits

    def _check_filter_fields(self, s: Snapshot, where: str) -> None:
        """Raise ``BadInput`` naming the fields of ``where`` that no indexed item has (a typo, e.g. ``splt``)."""
        from visrec.index.inputs import unknown_fields
        from visrec.stores import parse_filter

        note = unknown_fields(parse_filter(where), [m | {"extra": m.get("extra") or {}} for m in s.metadata().values()])
        if note:
            raise BadInput(f"{self.path}: no item matches --where {where!r}{note}")

    def search_images(
        self, images: Sequence[ImageLike], k: int = 10, where: str | None = None, rerank: bool = True
    ) -> list[list[Hit]]:
        """Image -> image search: top-``k`` hits per query image (``rerank``: see :meth:`search_vectors`)."""
        return self.search_vectors(self.encode(images).vectors, k, where, rerank)

    def text_encoder(self) -> TextEncoder:
        """The sentence encoder that matches free text against label names (MiniLM)."""
        if self._text_encoder is None:
            from visrec.encoders import create_text_encoder

            self._text_encoder = create_text_encoder()
        return self._text_encoder

    def match_labels(
        self, query: str, min_similarity: float = 0.6, snap: Snapshot | None = None
    ) -> list[tuple[str, float]]:
        """Label names whose text similarity to ``query`` is at least ``min_similarity``, best first.

        A case-insensitive exact match (or the query naming the label as a word) scores 1.0.
        """
        return text_search.match_labels(list(self.labels(snap)), self.text_encoder(), query, min_similarity)

    def search_text(self, query: str, k: int = 10, where: str | None = None, route: str = "auto") -> TextSearchResult:
        """Text -> image search.

        ``route="labels"``: the query is matched against label names (MiniLM similarity) and the images of the
        matched labels are returned, most typical first (closest to the label's mean vector). ``"joint"``: the
        query is encoded by the encoder's text side and searched among the images' joint vectors (a CLIP model,
        or the default encoder's ImageNet-label bridge, which knows everyday objects, not character names).
        ``"auto"``: labels when a label name matches, else joint.
        """
        return text_search.search_text(self, query, k, where, route)

    # -------------------------------------------------------------- classify
    def prototypes(self) -> tuple[np.ndarray, list[str]]:
        """Class mean vectors ``(c, dim)`` and their class names, as saved at build time."""
        return self.snapshot().prototypes()

    def calibration_data(self) -> dict[str, Any]:
        """The stored calibrations, by mode (empty when never calibrated)."""
        return self.snapshot().calibration_data()

    def calibration(self, mode: str, snap: Snapshot | None = None) -> Any:
        """The :class:`visrec.classify.Calibration` of ``mode``, or None."""
        from visrec.classify import Calibration

        s = snap or self.snapshot()
        if mode not in s.parsed:  # parsed once per generation: it holds held-out arrays and fitted maps
            data = s.calibration_data().get(mode)
            s.parsed[mode] = None if data is None else Calibration.from_dict(data)
        return s.parsed[mode]

    def resolve_mode(self, mode: str = AUTO, k: int | None = None, snap: Snapshot | None = None) -> str:
        """``mode`` itself, or for ``"auto"`` (:data:`~visrec.index.recognize.AUTO`) the mode it stands for on
        this generation: ``linear`` where a linear head was fitted and no neighbour count ``k`` is given, else
        ``knn``."""
        if mode != AUTO:
            return mode
        s = snap or self.snapshot()
        return "linear" if k is None and s.has_linear_head else "knn"

    def classifier(
        self,
        mode: str = AUTO,
        k: int | None = None,
        classes: ClassNames | None = None,
        snap: Snapshot | None = None,
    ) -> Any:
        """The classifier of ``mode`` set up from this index (stored options unless overridden)."""
        from visrec.classify import class_prompts
        from visrec.index.recognize import make_classifier

        s = snap or self.snapshot()
        mode = self.resolve_mode(mode, k, s)
        key = (mode, k, tuple(class_prompts(classes).items()) if classes else None)
        if key in s.classifiers:
            return s.classifiers[key]
        cal = self.calibration(mode, s)
        params = dict(cal.params) if cal is not None else {}
        if mode == "knn":  # a calibration stores its metric; one from before the option was fitted on cosines
            params.setdefault("metric", knn_metric(cal is not None, s.has_whitening))
            params.update({} if k is None else {"k": k})
        clf = make_classifier(s, mode, params, classes)
        s.classifiers[key] = clf  # zero-shot/blend classifiers hold encoded prompts: build them once
        return clf

    def classify(
        self,
        images: Sequence[ImageLike] | Embeddings,
        mode: str = AUTO,
        k: int | None = None,
        calibrated: bool = True,
        classes: ClassNames | None = None,
        target_precision: float | None = None,
        novelty_prior: float | None = None,
    ) -> list[Prediction]:
        """Classify images (or their embeddings) against the index.

        ``mode``: ``"auto"`` (default: the linear probe where the index has one, else kNN), ``knn``,
        ``prototype``, ``linear``, ``zeroshot`` or ``blend``. With ``calibrated`` (default) and a stored
        calibration, predictions carry a calibrated confidence and fall to unknown (``label=None``, ``reason``
        novel or ambiguous) when it is below the threshold; without calibration data they are raw.
        ``target_precision``/``novelty_prior``: replace the calibrated ones (answered precision wanted, share of
        novel images expected; no re-indexing needed).
        ``classes`` (zero-shot/blend): labels to answer with instead of the index's, as names or as a mapping
        label -> name used in the prompts (``{"Motorbikes": "motorbike"}``).
        """
        from visrec.index.recognize import predict

        emb = images if isinstance(images, Embeddings) else self.encode(images)
        s = self.snapshot()
        mode = self.resolve_mode(mode, k, s)
        if emb.encoder_id != s.encoder_info.get("fingerprint"):
            raise ManifestMismatch(
                f"query embeddings come from encoder {emb.encoder_id}, the index from "
                f"{s.encoder_info.get('fingerprint')}; encode queries with the index's encoder"
            )
        preds = predict(s, self.classifier(mode, k, classes, s), emb, mode)
        cal = self.calibration(mode, s) if calibrated and classes is None else None
        if calibrated and cal is None and classes is None and not s.calibration_data():
            raise NotCalibrated(
                f"{self.path} has no calibration; run: visrec calibrate {self.path}"
                + ("" if mode in ("knn", "prototype", "linear") else f" --modes {mode}")
                + "  (or pass calibrated=False)"
            )
        if cal is not None and k is not None and cal.params.get("k", k) != k:
            raise BadInput(
                f"the {mode} calibration of {self.path} was fitted with k={cal.params.get('k')}; thresholds do "
                f"not transfer to k={k}: drop -k, classify uncalibrated (--raw), or recalibrate with that k"
            )
        if cal is None:
            return preds
        if cal.decision is None:
            if target_precision is not None or novelty_prior is not None:
                raise BadInput(f"{self.path} was calibrated before precision could change at classify time; "
                               f"recalibrate it: visrec calibrate {self.path}")  # fmt: skip
            return cal.apply(preds)
        nov = self.novelty_scores(emb.vectors, cal.decision.novelty_name, s)
        return cal.apply(preds, nov, target_precision, novelty_prior)

    def novelty_scores(self, vectors: np.ndarray, name: str, snap: Snapshot | None = None) -> np.ndarray:
        """``(q,)`` novelty scores of query vectors by the score ``name`` fitted at calibration time (read from
        the generation ``snap``, default the newest)."""
        from visrec.classify.novelty import GaussianNovelty

        if name not in ("mahalanobis", "relative_mahalanobis"):
            raise BadInput(f"{self.path}: novelty score {name!r} is not stored with the index; recalibrate it")
        s = snap or self.snapshot()
        if s.novelty is None:
            p = s.gen / "novelty.npz"
            if not p.exists():
                raise NotCalibrated(f"{self.path} lacks novelty.npz; recalibrate it: visrec calibrate {self.path}")
            try:
                arrays = load_npz(p)
            except (OSError, ValueError) as e:
                raise IndexCorrupt(f"{p} cannot be read ({e}); rewrite it with: visrec calibrate {self.path}") from None
            s.novelty = GaussianNovelty.from_arrays(arrays, relative=name == "relative_mahalanobis")
        return s.novelty.score(vectors)


def _whitening_summary(gen: Path) -> dict[str, Any]:
    from visrec.index.metric import whitening_info

    info = whitening_info(gen) or {"fitted": False, "reason": "indexed before the whitened metric existed"}
    return {k: info[k] for k in ("fitted", "reason", "fitted_items", "rank") if k in info}


def _cal_summary(d: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "method",
        "target_precision",
        "precision",
        "coverage",
        "unknown_rejected",
        "target_met",
        "n_held_out",
        "novelty_prior",
        "reasons",
        "below_target",
    )
    return {k: d.get(k) for k in keys}
