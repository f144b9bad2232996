"""One-time conversion of a TF.js graph model (``model.json`` + ``.bin`` shards) to ONNX, checked against TF.

The TF.js format is a TensorFlow ``GraphDef`` written as JSON whose constants live in binary shards (float
weights often stored as float16). The graph is rebuilt with its weights, run once in TensorFlow on a seeded
random input, converted with tf2onnx, and the ONNX graph is run on the same input with ONNX Runtime; the
conversion is refused unless every output agrees within ``atol``. Needs the ``detector`` extra
(``tensorflow-cpu``, ``tf2onnx``) only while converting; inference then needs ONNX Runtime alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from visrec.errors import BadInput, MissingExtra, VisrecError


def read_tfjs(model_json: Path) -> tuple[Any, dict[str, Any]]:
    """The ``GraphDef`` of a TF.js graph model with every constant filled in, and its ``signature``."""
    tf, json_format = _tf()
    try:
        spec = json.loads(model_json.read_text())
        nodes, manifest = spec["modelTopology"]["node"], spec["weightsManifest"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{model_json}: not a TF.js graph model ({e})") from e
    graph = json_format.ParseDict({"node": nodes}, tf.compat.v1.GraphDef())
    by_name = {n.name: n for n in graph.node}
    for group in manifest:
        raw = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            arr, offset = _weight(raw, offset, w, model_json)
            node = by_name[w["name"]]
            want = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype  # int64 is stored as int32
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr.astype(want), shape=w["shape"]))
        if offset != len(raw):
            raise BadInput(f"{model_json}: the weight shards hold {len(raw)} bytes, the manifest describes {offset}")
    return graph, spec.get("signature", {})


def _weight(raw: bytes, offset: int, w: dict[str, Any], source: Path) -> tuple[np.ndarray, int]:
    n = int(np.prod(w["shape"])) if w["shape"] else 1
    quant = w.get("quantization")
    stored = np.dtype(quant["dtype"] if quant else w["dtype"])
    if quant and "scale" in quant:
        raise BadInput(f"{source}: weight {w['name']} uses affine quantization, which is not supported")
    end = offset + n * stored.itemsize
    if end > len(raw):
        raise BadInput(f"{source}: the weight shards end before weight {w['name']}")
    arr = np.frombuffer(raw, stored, n, offset).astype(w["dtype"]).reshape(w["shape"])
    return arr, end


def convert_tfjs(model_json: Path, out: Path, input_shape: tuple[int, ...], atol: float = 1e-4) -> list[str]:
    """Write ``model_json`` as ONNX to ``out`` after checking it against TensorFlow; returns the output names
    in the ONNX graph's order."""
    import onnxruntime as ort

    tf, _ = _tf()
    tf2onnx = _tf2onnx()
    graph, signature = read_tfjs(model_json)
    inputs, outputs = list(signature.get("inputs", {})), list(signature.get("outputs", {}))
    if len(inputs) != 1 or not outputs:
        raise BadInput(f"{model_json}: expected one input and named outputs in its signature, got {signature}")
    x = np.random.default_rng(0).random(input_shape, dtype=np.float32) * 4 - 2
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        expected = dict(zip(outputs, sess.run(outputs, {inputs[0]: x}), strict=True))
    tf2onnx.convert.from_graph_def(graph, input_names=inputs, output_names=outputs, opset=13, output_path=str(out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for name, got in zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True):
        err = float(np.abs(got - expected[name]).max())
        if err > atol:
            raise VisrecError(f"{model_json}: the ONNX conversion differs from TensorFlow on {name} by {err:.2e}")
    return names


def _tf() -> tuple[Any, Any]:
    try:
        import tensorflow as tf
        from google.protobuf import json_format
    except ImportError as e:
        raise MissingExtra("tensorflow-cpu", "detector", "Converting the TF.js detector to ONNX (once)") from e
    return tf, json_format


def _tf2onnx() -> Any:
    try:
        import tf2onnx
    except ImportError as e:
        raise MissingExtra("tf2onnx", "detector", "Converting the TF.js detector to ONNX (once)") from e
    return tf2onnx
