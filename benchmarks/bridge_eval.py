"""Zero-shot top-1 through the label bridge: class texts x temperature x top-k, chosen on TRAIN splits.

Usage::

    python benchmarks/embed_cache.py --cache /tmp/visrec-bench --sets cifar,caltech      # once
    python benchmarks/bridge_eval.py --cache /tmp/visrec-bench [--encoders efficientnet-lite0]

Zero-shot is what ``visrec classify --mode zeroshot`` does: each image's ImageNet logits go through the bridge
(:class:`visrec.encoders.bridge.LabelBridge`), each data set label through the classifier's prompt ensemble
(:func:`visrec.classify.zeroshot.prompt_vectors`), and the closest label wins. The grid runs on the *train*
splits of caltech101_dev (1515 images, 101 classes) and cifar10_subset (2000 images, 10 classes); the setting with
the best mean train top-1 is then reported once on the test splits, beside today's default (class_text=name,
T=3, top-k 5). With several encoders, their bridge vectors are also averaged (what an ensemble's joint vector is).

Then the zero-shot classifier's default scoring, ``concepts`` (:meth:`ZeroShotClassifier.concept_scores`): each
label's prompts (templates around the name and, with ``wordnet``, its WordNet definition and hypernym) become
weights over the ImageNet classes (softmax of MiniLM cosines at ``tau``, ``keep`` largest), scored by an image's
probability mass at temperature ``T``. That grid is chosen on the train splits too and reported once on test,
beside names-only prompts. ``--concepts-only`` skips the joint-space grid (its test rows still print). Last, a
guard on naruto_roboflow (character names the bridge cannot know), when cached.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from embed_cache import SETS, load  # noqa: E402

from visrec.classify.zeroshot import DEFAULT_TEMPLATES, ZeroShotClassifier, prompt_vectors  # noqa: E402
from visrec.encoders.bridge import CLASS_TEXTS, SPACES, LabelBridge  # noqa: E402
from visrec.encoders.text import MiniLMTextEncoder  # noqa: E402
from visrec.encoders.wordnet import WordNetNouns  # noqa: E402

TEXT_GRID = {"temperature": (1.0, 2.0, 3.0, 5.0), "top_k": (1, 3, 5, 10, 0), "text_temperature": (0.08,)}
CLASS_GRID = {"temperature": (1.0, 2.0, 3.0), "top_k": (5, 10, 0), "text_temperature": (0.04, 0.08, 0.12, 0.16)}
TODAY = ("text", "name", 3.0, 5, 0.08)
DEFAULT = ("text", "gloss", 2.0, 5, 0.12)
CLASS_OPTION = ("classes", "gloss", 1.0, 0, 0.12)
CONCEPT_GRID = {"T": (1.0, 1.5, 2.0), "tau": (0.04, 0.06, 0.08), "keep": (20, 50, 1000)}
CHOSEN = (1.5, 0.06, 50)


class MemoText:
    """The MiniLM encoder with a memo of every batch of texts it encoded (the grid re-asks the same prompts)."""

    def __init__(self, text: MiniLMTextEncoder) -> None:
        self.text, self.dim, self.fingerprint = text, text.dim, text.fingerprint
        self.memo: dict[tuple[str, ...], np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        key = tuple(texts)
        if key not in self.memo:
            self.memo[key] = self.text.encode(texts)
        return self.memo[key]


def labels_and_splits(root: Path, name: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Label and split of each cached path, from the data set's manifest."""
    folder = root / SETS[name]
    rows = {str(folder / r["path"]): r for r in csv.DictReader((folder / "manifest.csv").open())}
    return np.array([rows[p]["label"] for p in paths]), np.array([rows[p]["split"] for p in paths])


def zero_shot(joint: np.ndarray, labels: np.ndarray, text_vectors: np.ndarray, classes: list[str]) -> float:
    """Top-1 (percent) of the closest class text vector."""
    pred = np.asarray(classes)[(joint @ text_vectors.T).argmax(axis=1)]
    return 100 * float((pred == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    parser.add_argument("--encoders", default="efficientnet-lite0")
    parser.add_argument("--concepts-only", action="store_true", help="skip the joint-space grid")
    args = parser.parse_args()
    text = MemoText(MiniLMTextEncoder())
    encoders = args.encoders.split(",")
    data = {}
    for name in ("caltech", "cifar"):
        logits = [load(args.cache, e, name)[1] for e in encoders]
        labels, splits = labels_and_splits(args.data, name, load(args.cache, encoders[0], name)[2])
        classes = sorted(set(labels))
        data[name] = (logits, labels, splits, classes)
    bridges = {(sp, ct): LabelBridge(text, class_text=ct, space=sp) for sp in SPACES for ct in CLASS_TEXTS}  # type: ignore[arg-type]

    def score(sp: str, ct: str, t: float, k: int, tau: float, split: str) -> dict[str, float]:
        b = bridges[(sp, ct)]
        b.temperature, b.top_k, b.text_temperature = t, k, tau
        out = {}
        for name, (logits, labels, splits, classes) in data.items():
            tv = prompt_vectors(classes, b.encode_texts)
            joint = sum(b.project(lg) for lg in logits)
            joint = joint / np.linalg.norm(joint, axis=1, keepdims=True)
            keep = splits == split
            out[name] = zero_shot(joint[keep], labels[keep], tv, classes)
        return out

    if not args.concepts_only:
        joint_grid(score)
    print(f"{'TEST split, joint-space cosine':60s} caltech  cifar")
    for what, key in (("names only, T=3 (before the WordNet class texts)", TODAY),
                      ("default bridge (names + glosses, T=2, top-5)", DEFAULT),
                      ("bridge_space=classes option (T=1, all classes, tau 0.12)", CLASS_OPTION)):  # fmt: skip
        r = score(*key, "test")
        print(f"{what:60s} {r['caltech']:6.1f} {r['cifar']:6.1f}", flush=True)
    concepts(text, data)
    naruto_guard(text, args.cache, args.data, encoders)


def joint_grid(score: Callable[..., dict[str, float]]) -> None:
    """The joint-space grid on the train splits; the best setting once on test."""
    print("zero-shot top-1 (joint-space cosine) on the TRAIN splits")
    print(f"{'space':7s} {'class_text':16s} {'T':>4s} {'top_k':>5s} {'tau':>5s} | caltech  cifar   mean")
    results = {}
    for sp in SPACES:
        grid = CLASS_GRID if sp == "classes" else TEXT_GRID
        for ct, t, k, tau in itertools.product(CLASS_TEXTS, *grid.values()):
            key = (sp, ct, t, k, tau)
            r = results[key] = score(*key, "train")
            mean = (r["caltech"] + r["cifar"]) / 2
            print(f"{sp:7s} {ct:16s} {t:4.1f} {k or 'all':>5} {tau:5.2f} | {r['caltech']:6.1f} {r['cifar']:6.1f} "
                  f"{mean:6.1f}", flush=True)  # fmt: skip
    best = max(results, key=lambda key: results[key]["caltech"] + results[key]["cifar"])
    r = score(*best, "test")
    print(f"chosen on train: {best}; TEST caltech {r['caltech']:.1f} cifar {r['cifar']:.1f}\n")


def concepts(text: MemoText, data: dict[str, tuple[list[np.ndarray], np.ndarray, np.ndarray, list[str]]]) -> None:
    """Concept scoring (the zero-shot classifier's default): grid on train, the chosen setting on test."""
    bridge = LabelBridge(text, class_text="gloss")
    nouns = WordNetNouns()

    def weights(classes: list[str], wordnet: bool, tau: float, keep: int) -> np.ndarray:
        texts = [nouns.describe(c) if wordnet else [c.replace("_", " ")] for c in classes]
        return bridge.concept_weights([[t.format(x) for t in DEFAULT_TEMPLATES for x in ts] for ts in texts], tau, keep)

    def top1(wordnet: bool, t: float, tau: float, keep: int, split: str) -> dict[str, float]:
        out = {}
        for name, (logits, labels, splits, classes) in data.items():
            clf = ZeroShotClassifier(classes, np.eye(len(classes), dtype=np.float32), concepts=weights(
                classes, wordnet, tau, keep), concept_temperature=t)  # fmt: skip
            keep_rows = splits == split
            scores = clf.concept_scores(np.mean(logits, axis=0)[keep_rows])
            pred = np.asarray(classes)[scores.argmax(axis=1)]
            out[name] = 100 * float((pred == labels[keep_rows]).mean())
        return out

    print("\nconcept scoring on the TRAIN splits")
    print(f"{'texts':8s} {'T':>4s} {'tau':>5s} {'keep':>5s} | caltech  cifar   mean")
    results = {}
    for wordnet, t, tau, keep in itertools.product((False, True), *CONCEPT_GRID.values()):
        r = results[(wordnet, t, tau, keep)] = top1(wordnet, t, tau, keep, "train")
        texts = "wordnet" if wordnet else "names"
        print(f"{texts:8s} {t:4.1f} {tau:5.2f} {keep:5d} | {r['caltech']:6.1f} {r['cifar']:6.1f} "
              f"{(r['caltech'] + r['cifar']) / 2:6.1f}", flush=True)  # fmt: skip
    best = max(results, key=lambda key: results[key]["caltech"] + results[key]["cifar"])
    print(
        f"best on train: wordnet={best[0]} T={best[1]} tau={best[2]} keep={best[3]}; shipped: T, tau, keep = {CHOSEN}"
    )
    print(f"{'TEST split, concept scoring (shipped T, tau, keep)':60s} caltech  cifar")
    for what, wordnet in (("names only", False), ("names + WordNet definition and hypernym (default)", True)):
        r = top1(wordnet, *CHOSEN, "test")
        print(f"{what:60s} {r['caltech']:6.1f} {r['cifar']:6.1f}", flush=True)


def naruto_guard(text: MemoText, cache: Path, root: Path, encoders: list[str]) -> None:
    """naruto_roboflow (character names, nothing ImageNet names): zero-shot by joint cosine and by concepts, all
    images. Neither can know the characters; the row shows concept scoring does not fail where the bridge is blind."""
    try:
        logits = np.mean([load(cache, e, "naruto")[1] for e in encoders], axis=0)
    except FileNotFoundError:
        print("naruto not cached: skipped")
        return
    labels, _ = labels_and_splits(root, "naruto", load(cache, encoders[0], "naruto")[2])
    classes = sorted(set(labels))
    bridge = LabelBridge(text, temperature=2.0, top_k=5, class_text="gloss")
    joint = bridge.project(logits)
    by_joint = zero_shot(joint, labels, prompt_vectors(classes, bridge.encode_texts), classes)
    nouns = WordNetNouns()
    prompts = [[t.format(x) for t in DEFAULT_TEMPLATES for x in nouns.describe(c)] for c in classes]
    clf = ZeroShotClassifier(classes, np.eye(len(classes), dtype=np.float32), concepts=bridge.concept_weights(
        prompts, CHOSEN[1], CHOSEN[2]), concept_temperature=CHOSEN[0])  # fmt: skip
    by_concepts = 100 * float((np.asarray(classes)[clf.concept_scores(logits).argmax(axis=1)] == labels).mean())
    print(f"naruto_roboflow, {len(classes)} characters, {len(labels)} images (chance {100 / len(classes):.1f} %): "
          f"joint cosine {by_joint:.1f} %, concepts {by_concepts:.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()
