"""``visrec eval`` / ``visrec compare`` as a user runs them (fake encoder), and the HTML report in a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.shared_data import REPO, SHARED_DATA, shared_data
from tests.unit.test_eval_runner import make_eval_set

SHARED = SHARED_DATA
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMG_CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0));
  const out = document.createElement('pre'); out.id = 'imgcheck';
  out.textContent = 'IMGCHECK ' + JSON.stringify({n: imgs.length, bad: bad.map(i => i.alt)});
  document.body.appendChild(out);
});</script>"""


def cli(*args: str, ok: bool = True, module: str = "visrec.cli.eval") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, env=env)
    if ok:
        assert res.returncode == 0, res.stderr + res.stdout
    return res


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_eval_set(tmp_path_factory.mktemp("evalcli"))


@pytest.fixture(scope="module")
def report(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report")
    unknown = str(manifest.parent / "unknown_tree")
    res = cli("eval", str(manifest), "--split-field", "split", "--train", "train", "--encoder", "fake",
              "-m", "knn,prototype", "--unknown", unknown, "--out", str(out), "--json")  # fmt: skip
    return json.loads(res.stdout)


def test_eval_writes_json_and_html(report: dict[str, Any]) -> None:
    assert Path(report["written"]["json"]).is_file() and Path(report["written"]["html"]).is_file()
    assert report["split"] == {"field": "split", "rule": "field split", "train": 18, "test": 7, "no_split": 0,
                               "n_leaked": 1}  # fmt: skip
    assert "1 of 7 test images" in report["warnings"][0]
    knn = report["encoders"][0]["modes"]["knn"]
    assert knn["classification"]["top1_raw"] >= 6 / 7 and knn["open_set"]["n_unknown"] == 4


def test_compare_prints_one_table(manifest: Path, tmp_path: Path) -> None:
    res = cli("compare", str(manifest), "--encoder", "fake", "--modes", "knn,prototype", "--out", str(tmp_path))
    lines = res.stdout.splitlines()
    assert sum("mAP@R" in line and "search" in line for line in lines) == 1
    rows = [line for line in lines if line.strip().startswith("fake")]
    assert any(" knn " in line for line in rows) and any(" prototype " in line for line in rows)
    assert max(len(line) for line in rows) <= 100  # was 134-140 columns
    assert "image-search score out of 1000" in " ".join(res.stdout.split())  # the legend
    assert "RSS MiB" not in res.stdout and (tmp_path / "report.html").is_file()
    wide = cli("compare", str(manifest), "--encoder", "fake", "--modes", "knn,prototype", "--out", str(tmp_path),
               "--wide")  # fmt: skip
    assert "RSS MiB" in wide.stdout


def test_compare_needs_two_runs_and_bad_field_is_exit_2(manifest: Path, tmp_path: Path) -> None:
    res = cli("compare", str(manifest), "--encoder", "fake", "--modes", "knn", "--out", str(tmp_path), ok=False)
    assert res.returncode == 2 and "at least two" in res.stderr
    res = cli("eval", str(manifest), "--encoder", "fake", "--split-field", "nope", "--out", str(tmp_path), ok=False)
    err = " ".join(res.stderr.split())
    assert res.returncode == 2 and "values present: none (no image has a value in field 'nope')" in err
    assert "None" not in err


def test_eval_counts_images_with_no_split_value(tmp_path: Path) -> None:
    manifest = make_eval_set(tmp_path / "data")
    lines = manifest.read_text().splitlines()
    blanked = [line.removesuffix(",train") + "," if i in (1, 2, 3) else line for i, line in enumerate(lines)]
    manifest.write_text("\n".join(blanked) + "\n")
    args = ("eval", str(manifest), "--split-field", "split", "--train", "train", "--encoder", "fake", "-m", "knn",
            "--no-plots", "--out", str(tmp_path / "r"))  # fmt: skip
    assert json.loads(cli(*args, "--json").stdout)["split"]["no_split"] == 3
    text = " ".join(cli(*args).stdout.split())
    assert "split: field split (15 train, 7 test; 3 with no split value, left out)" in text and "None" not in text


def test_eval_of_an_existing_index(manifest: Path, tmp_path: Path) -> None:
    idx = tmp_path / "train.vrx"
    cli("index", str(manifest), "--out", str(idx), "--encoder", "fake", "--where", 'split == "train"',
        "--json", module="visrec.cli")  # fmt: skip
    bad = cli("eval", str(idx), "--out", str(tmp_path / "r"), ok=False)
    assert bad.returncode == 2 and "--data" in bad.stderr
    res = cli("eval", str(idx), "--data", str(manifest), "--split-field", "split", "--train", "train",
              "--out", str(tmp_path / "r"), "--json")  # fmt: skip
    out = json.loads(res.stdout)
    assert out["index"] == str(idx) and out["encoders"][0]["gallery"] == 18 and out["encoders"][0]["queries"] == 7
    text = cli("eval", str(idx), "--data", str(manifest), "--split-field", "split", "--train", "train",
               "--out", str(tmp_path / "t"), "--no-plots").stdout  # fmt: skip
    assert "linear at the default: known test images unknown as novel" in text and "the best threshold" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report: dict[str, Any], tmp_path: Path) -> None:
    page = Path(report["written"]["html"]).read_text(encoding="utf-8")
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", IMG_CHECK + "</body>"), encoding="utf-8")
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    marker = dom.rsplit("IMGCHECK ", 1)
    assert len(marker) == 2, f"the check script did not run; chromium printed: {dom[:500]}"
    seen = json.loads(marker[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    plots = 2 * 2 + 3
    assert seen["bad"] == [] and seen["n"] >= plots, seen


@pytest.mark.skipif(
    not (SHARED / "naruto_roboflow").is_dir(),
    reason=f"{SHARED / 'naruto_roboflow'} not present (../shared/data beside the repository, or set VISREC_SHARED)",
)
def test_eval_on_naruto_grouped_split(tmp_path: Path) -> None:
    res = cli("eval", str(SHARED / "naruto_roboflow"), "--split-field", "grouped_split", "--encoder", "fake",
              "--out", str(tmp_path), "--no-plots", "--json")  # fmt: skip
    out = json.loads(res.stdout)
    assert out["split"]["train"] == 306 and out["split"]["test"] == 85
    assert (tmp_path / "report.html").stat().st_size > 10_000 and (tmp_path / "eval.json").is_file()


def test_knn_eval_searches_the_index_whitened_metric_and_calibrate_can_choose_cosine(
    manifest: Path, tmp_path: Path
) -> None:
    from visrec.index import Index

    idx = tmp_path / "train.vrx"
    cli("index", str(manifest), "--out", str(idx), "--encoder", "fake", "--where", 'split == "train"',
        "--json", module="visrec.cli")  # fmt: skip
    assert json.loads((Index(idx).gen / "calibration.json").read_text())["knn"]["params"]["metric"] == "cosine"
    cli("calibrate", str(idx), "--modes", "knn", "--metric", "whitened", module="visrec.cli")  # opt in
    gen = Index(idx).gen
    assert json.loads((gen / "calibration.json").read_text())["knn"]["params"]["metric"] == "whitened"
    args = ("eval", str(idx), "--data", str(manifest), "--split-field", "split", "--train", "train", "-m", "knn",
            "--no-plots", "--out", str(tmp_path / "r"), "--json")  # fmt: skip
    assert json.loads(cli(*args).stdout)["encoders"][0]["queries"] == 7
    (gen / "whitening.npz").unlink()  # eval's kNN needs the stored whitening, and says how to restore it
    bad = cli(*args, ok=False)
    assert bad.returncode == 3 and "visrec calibrate" in bad.stderr
    cli("calibrate", str(idx), "--modes", "knn", module="visrec.cli")
    assert json.loads(cli(*args).stdout)["encoders"][0]["queries"] == 7
    cli("calibrate", str(idx), "--modes", "knn", "--metric", "cosine", module="visrec.cli")
    assert Index(idx).calibration("knn").params["metric"] == "cosine"
    bad = cli("calibrate", str(idx), "--metric", "euclid", module="visrec.cli", ok=False)
    assert bad.returncode == 2 and "--metric" in bad.stderr


def test_shared_data_is_found_beside_the_repository_or_through_visrec_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISREC_SHARED", raising=False)
    assert shared_data() == REPO.parent / "shared" / "data"
    monkeypatch.setenv("VISREC_SHARED", str(tmp_path))  # a checkout elsewhere, e.g. a git worktree
    assert shared_data() == tmp_path / "data"
