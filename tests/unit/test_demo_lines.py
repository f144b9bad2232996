"""The demo's printed summary: a text search the bridge finds nothing for says so."""

from __future__ import annotations

from visrec.demo import DemoResult


def _result(matches: bool | None) -> DemoResult:
    hit = {"labels": ["Sakura"], "score": 0.61}
    search = {"query": "a photo of a flower", "route": "joint", "hits": [hit], "concepts": ["daisy"]}
    search["matches_query"] = matches
    index = {"path": "demo.vrx", "count": 3, "embedded_per_second": 10.0}
    return DemoResult("data", "split", 2, 1, index, {}, [search], "linear")


def test_a_search_that_finds_nothing_the_query_names_says_so() -> None:
    assert "nothing here is what it names" in _result(False).lines()[-1]
    assert "daisy" in _result(False).lines()[-1]
    for matches in (True, None):
        assert _result(matches).lines()[-1] == "search 'a photo of a flower' via joint: Sakura 0.61"
