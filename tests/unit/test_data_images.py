"""Decoding: every odd-but-valid format comes out as the right RGB pixels; every bad file gets its reason."""

from __future__ import annotations

import hashlib
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.fixtures_images import (
    make_bad_images,
    make_decompression_bomb,
    make_exif_rotated_jpeg,
    make_odd_images,
    make_truncated_jpeg,
    noise_image,
)
from visrec.data import IMAGE_EXTENSIONS, file_facts, is_image_file, load_image, to_rgb_array
from visrec.data.images import decode_bytes, decode_file, header_size
from visrec.errors import BadImage, BadInput

REASONS = ("empty", "not-an-image", "truncated", "corrupt", "too-large", "missing")


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_images(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_odd_images(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("reason", REASONS)
def test_each_bad_file_raises_its_reason_with_a_fix(bad: dict[str, Path], reason: str) -> None:
    for fn in (load_image, file_facts):
        with pytest.raises(BadImage) as info:
            fn(bad[reason])
        assert info.value.reason == reason
        assert info.value.path == str(bad[reason])
        assert info.value.detail  # says what to do
        assert reason in str(info.value)


def test_missing_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BadImage) as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.reason == "missing" and "does not exist" in str(info.value)


def test_folder_given_as_image_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BadImage) as info:
        load_image(tmp_path)
    assert info.value.reason == "unreadable"


@pytest.mark.parametrize("keep", [0.02, 0.1, 0.5, 0.95])
def test_truncated_anywhere_in_the_scan_is_reported(tmp_path: Path, keep: float) -> None:
    path = make_truncated_jpeg(tmp_path / "cut.jpg", keep=keep)
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert info.value.reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # never turned on behind the user's back


def test_damaged_png_signature_with_garbage_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x07" * 40 + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert info.value.reason == "corrupt"


def test_bomb_refused_from_header_without_decoding(tmp_path: Path) -> None:
    # 9000 x 9000 = 81 Mpx is under Pillow's own limit: only our header check stands between it and an
    # 81 MB allocation. The peak RSS must not grow by anything like that.
    path = make_decompression_bomb(tmp_path / "big.png", 9000, 9000)
    assert path.stat().st_size < 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for fn in (load_image, file_facts):
        with pytest.raises(BadImage) as info:
            fn(path, max_pixels=1_000_000)
        assert info.value.reason == "too-large"
        assert "pixel limit" in info.value.detail
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 40_000


def test_pillow_bomb_warning_becomes_the_too_large_skip(tmp_path: Path) -> None:
    # 9500 x 9500 = 90.25 Mpx: over Pillow's limit (89.5 Mpx, where it only warns and decodes) and under ours
    path = make_decompression_bomb(tmp_path / "warn.png", 9500, 9500)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(BadImage) as info:
            load_image(path)
    assert info.value.reason == "too-large" and "warn.png" in str(info.value) and "safety limit" in str(info.value)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]


def test_decode_bytes_names_the_given_file(tmp_path: Path) -> None:
    data = (make_bad_images(tmp_path)["truncated"]).read_bytes()
    with pytest.raises(BadImage) as info:
        decode_bytes(data, "holiday.jpg")
    assert str(info.value).startswith("holiday.jpg") and str(tmp_path) not in str(info.value)
    ok = tmp_path / "ok.png"
    Image.fromarray(noise_image(20, seed=1)).save(ok)
    assert header_size(ok.read_bytes(), "ok.png") == (20, 20)
    assert np.array_equal(np.asarray(decode_bytes(ok.read_bytes(), "ok.png").image), load_image(ok))


def test_huge_bomb_refused_with_default_limit(tmp_path: Path) -> None:
    path = make_decompression_bomb(tmp_path / "huge.png")  # claims 10^10 pixels
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert info.value.reason == "too-large"
    assert Image.MAX_IMAGE_PIXELS == 89_478_485 or Image.MAX_IMAGE_PIXELS is None  # not changed by us


def test_cmyk_jpeg_comes_out_as_its_rgb_colour(odd: dict[str, Path]) -> None:
    arr = load_image(odd["cmyk"])
    assert arr.shape == (24, 32, 3) and arr.dtype == np.uint8
    assert np.abs(arr.reshape(-1, 3).mean(0) - (200, 40, 40)).max() < 6


def test_16bit_png_is_stretched_not_clipped(odd: dict[str, Path]) -> None:
    arr = load_image(odd["png16"])
    assert arr.shape == (16, 64, 3)
    row = arr[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 50  # a ramp, not all-white


def test_transparent_palette_and_rgba_are_composited_on_white(odd: dict[str, Path]) -> None:
    pal = load_image(odd["palette_transparent"])
    assert tuple(pal[0, 0]) == (255, 0, 0) and tuple(pal[0, -1]) == (255, 255, 255)
    opaque = load_image(odd["palette"])
    assert tuple(opaque[0, -1]) == (0, 0, 255)
    rgba = load_image(odd["rgba"])
    assert tuple(rgba[0, 0]) == (0, 255, 0) and tuple(rgba[-1, -1]) == (255, 255, 255)


def test_exif_orientation_6_is_applied(odd: dict[str, Path]) -> None:
    arr = load_image(odd["exif6"])
    assert arr.shape == (40, 20, 3)  # stored 40 wide x 20 high, displayed 20 wide x 40 high
    top, bottom = arr[:15].reshape(-1, 3).mean(0), arr[-15:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # red on top
    assert bottom[2] > 200 and bottom[0] < 50  # blue below


@pytest.mark.parametrize("kind", ["gray", "bilevel", "la", "gif", "webp", "bmp", "tiff16"])
def test_every_mode_decodes_to_rgb_uint8(odd: dict[str, Path], kind: str) -> None:
    arr = load_image(odd[kind])
    assert arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
    if kind in ("gray", "bilevel", "la", "tiff16"):
        assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])


def test_draft_size_decodes_jpeg_smaller_but_not_below_the_size(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(noise_image((800, 600), seed=5)).save(path, quality=90)
    full = load_image(path)
    small = load_image(path, draft_size=128)
    assert full.shape == (600, 800, 3)
    assert 128 <= min(small.shape[:2]) < 600
    png = tmp_path / "big.png"
    Image.fromarray(full).save(png)
    assert load_image(png, draft_size=128).shape == (600, 800, 3)  # non-JPEG: full size


def test_draft_keeps_exif_rotation(tmp_path: Path) -> None:
    arr = load_image(make_exif_rotated_jpeg(tmp_path / "r.jpg"), draft_size=8)
    assert arr.shape[0] > arr.shape[1]


def test_file_facts_hash_and_displayed_size(odd: dict[str, Path]) -> None:
    sha, w, h = file_facts(odd["exif6"])
    assert sha == hashlib.sha256(odd["exif6"].read_bytes()).hexdigest()
    assert (w, h) == (20, 40)
    assert file_facts(odd["cmyk"])[1:] == (32, 24)


@pytest.mark.parametrize("kind", ["exif6", "cmyk", "gray", "la", "rgba", "palette", "gif", "webp", "tiff16"])
def test_decode_file_gives_load_images_pixels_as_an_rgb_pil_image_and_the_displayed_size(
    odd: dict[str, Path], kind: str
) -> None:
    """The one-decode path of the indexer: same pixels as ``load_image``, size as ``file_facts`` reports it."""
    decoded = decode_file(odd[kind], draft_size=16)
    assert decoded.image.mode == "RGB"
    assert np.array_equal(np.asarray(decoded.image), load_image(odd[kind], draft_size=16))
    assert (decoded.width, decoded.height) == file_facts(odd[kind])[1:]


def test_decode_file_reports_the_full_size_of_a_draft_decoded_jpeg(tmp_path: Path) -> None:
    path = make_exif_rotated_jpeg(tmp_path / "r.jpg")
    full = load_image(path)
    decoded = decode_file(path, draft_size=8)
    assert decoded.image.height < full.shape[0]  # decoded at a reduced DCT scale...
    assert (decoded.width, decoded.height) == (full.shape[1], full.shape[0])  # ...the file's upright size


def test_file_facts_without_verify_only_reads_the_header(bad: dict[str, Path]) -> None:
    sha, w, h = file_facts(bad["truncated"], verify=False)
    assert (w, h) == (96, 96) and len(sha) == 64


def test_to_rgb_array_accepts_arrays_pil_and_paths(odd: dict[str, Path]) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    assert to_rgb_array(rgb) is rgb or np.shares_memory(to_rgb_array(rgb), rgb)
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert to_rgb_array(gray).shape == (4, 5, 3) and to_rgb_array(gray)[1, 1, 2] == 6
    assert to_rgb_array(gray[..., None]).shape == (4, 5, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    out = to_rgb_array(rgba)
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[1, 1]) == (255, 255, 255)
    with Image.open(odd["exif6"]) as im:
        assert to_rgb_array(im).shape == (40, 20, 3)  # PIL images get the same EXIF handling
    assert to_rgb_array(odd["cmyk"]).shape == (24, 32, 3)
    assert to_rgb_array(str(odd["cmyk"])).shape == (24, 32, 3)


@pytest.mark.parametrize(
    "bad_input",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 3), np.uint8), 42],
)
def test_to_rgb_array_rejects_what_it_cannot_use(bad_input: object) -> None:
    with pytest.raises(BadInput) as info:
        to_rgb_array(bad_input)  # type: ignore[arg-type]
    assert "uint8" in str(info.value) or "shape" in str(info.value) or "expected" in str(info.value)


def test_float_array_error_says_how_to_convert() -> None:
    with pytest.raises(BadInput, match=r"\* 255"):
        to_rgb_array(np.zeros((4, 4, 3), np.float64))


def test_image_extensions_case_insensitive_and_hidden_names_rejected() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert is_image_file("a/B.JPG") and is_image_file(Path("x.TiFf")) and is_image_file("y.webp")
    assert not is_image_file("notes.txt") and not is_image_file("._photo.jpg") and not is_image_file("jpg")


def test_importing_visrec_data_loads_no_torch_and_changes_no_pillow_setting() -> None:
    code = (
        "import sys; from PIL import Image, ImageFile; before = Image.MAX_IMAGE_PIXELS; import visrec.data; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert Image.MAX_IMAGE_PIXELS == before and ImageFile.LOAD_TRUNCATED_IMAGES is False"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
