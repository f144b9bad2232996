"""What a class name means, from WordNet: its definition and what it is a kind of.

Zero-shot labels are often words that MiniLM barely knows or that ImageNet never named ("ketch", "gerenuk",
"euphonium", "hawksbill"). WordNet defines them in words the bridge does know: "ketch, a sailing vessel with two
masts" and "ketch, a kind of sailing vessel". :func:`describe` turns a label into such texts; the zero-shot
classifier puts each of them in its prompt templates beside the bare name.

The lookup reads ``resources/wordnet_nouns.tsv.gz`` (about 74,000 nouns that name physical things, one sense each:
the one ImageNet-1k knows best, so "leopard" is the cat and not its pelt, "schooner" the ship and not the beer
glass; written once by ``scripts/make_wordnet_nouns.py`` from WordNet 3.0). Names are matched after lower-casing,
with ``_`` / ``-`` read as spaces or joined ("wild_cat" -> "wildcat") and plurals reduced ("Motorbikes" ->
"motorbike"). A name WordNet does not hold ("car_side", "snoopy") gets no extra text.
"""

from __future__ import annotations

import gzip
from importlib import resources

from visrec.errors import BadInput

_SUFFIXES = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y"))


class WordNetNouns:
    """The table of ``resources/wordnet_nouns.tsv.gz``: noun -> (gloss, hypernym). Read once per instance."""

    def __init__(self) -> None:
        raw = resources.files("visrec").joinpath("resources/wordnet_nouns.tsv.gz").read_bytes()
        self._rows: dict[str, tuple[str, str]] = {}
        for line in gzip.decompress(raw).decode("utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            noun, gloss, hyper = line.split("\t")
            self._rows[noun] = (gloss, hyper)
        if len(self._rows) < 1000:
            raise BadInput(f"resources/wordnet_nouns.tsv.gz holds {len(self._rows)} nouns; reinstall visrec")

    def lookup(self, name: str) -> tuple[str, str, str] | None:
        """``(noun, gloss, hypernym)`` of a class name, or None when WordNet has no physical noun by that name."""
        words = name.strip().lower().replace("_", " ").replace("-", " ").split()
        if not words:
            return None
        for form in dict.fromkeys((" ".join(words), "".join(words), "-".join(words))):
            for noun in _singulars(form):
                if noun in self._rows:
                    return (noun, *self._rows[noun])
        return None

    def describe(self, name: str) -> list[str]:
        """Texts for the class ``name``: the name itself (``_`` read as a space), then, when WordNet knows it,
        ``"name, definition"`` and ``"name, a kind of hypernym"``."""
        clean = " ".join(name.replace("_", " ").split())
        found = self.lookup(name)
        if found is None:
            return [clean]
        _, gloss, hyper = found
        texts = [clean, f"{clean}, {gloss}"]
        if hyper:
            texts.append(f"{clean}, a kind of {hyper}")
        return texts


def _singulars(word: str) -> list[str]:
    """``word`` and the singulars it may be a plural of (WordNet's ``morphy`` rules for nouns)."""
    out = [word]
    for plural, single in _SUFFIXES:
        if word.endswith(plural):
            out.append(word[: len(word) - len(plural)] + single)
    if word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    return out
