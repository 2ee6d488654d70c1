#!/usr/bin/env python3
"""Derive cheaper face-descriptor variants from the given networks by shrinking the input crop.

Needs only `pip install onnx onnxruntime numpy` (no torch: nothing is retrained).

The descriptor network (dlib's ResNet as ported by face-api) ends in a global average pool, so
its weights do not depend on the crop side S. What does depend on S are the residual
down-sampling blocks: a 3x3 stride-2 unpadded convolution is added to a 2x2 stride-2 average pool,
and the graph pads the convolution's output by a constant (1 at the end of H and W in the last two
blocks) so the two match at S=150. This script fixes the input to S, recomputes those pads for the
stage sizes S gives, and refuses an S where a block cannot match (the first two blocks have no
pad, so their inputs must be odd; the last needs at least 3 pixels). With the 7x7/2 stem and 3x3/2
max pool that leaves S in 115..=118, 131..=134 and 147..=150 (nothing below 115 without changing
the network): 132 (0.77x the pixels of 150) and 116 (0.60x) are the cheaper crops. The int8 file (static QDQ, quantised from the fp32 one at 150)
keeps its activation scales: they are per tensor, not per position, so they carry over.

Usage: python3 models/face/derive.py            # writes face_recognition_{132,116}_int8.onnx
       python3 models/face/derive.py --size 118 --source face_recognition_150.onnx --out x.onnx
"""

import argparse
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = pathlib.Path(__file__).resolve().parent


def conv_out(h, k, s):
    return (h - k) // s + 1


def stage_pads(size):
    """Extra end padding for the conv path of each of the 4 down-sampling blocks, or ValueError."""
    h = conv_out(conv_out(size, 7, 2), 3, 2)  # stem conv 7x7/2, max pool 3x3/2
    pads = []
    for block in range(4):
        conv, pool = conv_out(h, 3, 2), h // 2
        if conv < 1 or pool - conv not in (0, 1):
            raise ValueError(f"size {size}: block {block} input {h} cannot be down-sampled")
        if block < 2 and conv != pool:
            raise ValueError(f"size {size}: block {block} input {h} must be odd (no pad there)")
        pads.append(pool - conv)
        h = pool
    return pads[2:]  # the blocks with a pad node on the conv path


def derive(source, size, out):
    model = onnx.load(source)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for i in (2, 3):
        dims[i].ClearField("dim_param")
        dims[i].dim_value = size
    del model.graph.value_info[:]  # shapes inferred at 150 no longer hold
    inits = {t.name: t for t in model.graph.initializer}
    # The conv-path pads, in graph order (named padout_*); channel pads (padc_*) do not change.
    padout = [n for n in model.graph.node if n.op_type == "Pad" and "padout" in n.input[1]]
    wanted = stage_pads(size)
    if len(padout) != len(wanted):
        raise SystemExit(f"{source}: found {len(padout)} conv-path pads, expected {len(wanted)}")
    for node, extra in zip(padout, wanted):
        old = numpy_helper.to_array(inits[node.input[1]]).copy()
        old[6] = old[7] = extra  # end of H and W (NCHW: begins 0..4, ends 4..8)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(old, node.input[1]))
    onnx.checker.check_model(model)
    onnx.save(model, out)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(out), options)
    crops = np.random.default_rng(0).uniform(0, 255, (2, 3, size, size)).astype(np.float32)
    (descriptors,) = session.run(None, {"input": crops})
    assert descriptors.shape == (2, 128), descriptors.shape
    print(f"{out.name}: input [N,3,{size},{size}], {out.stat().st_size} bytes, runs")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, action="append", help="default: 132 and 116")
    parser.add_argument("--source", default="face_recognition_150_int8.onnx")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    source = HERE / args.source
    sizes = args.size or [132, 116]
    if args.out and len(sizes) > 1:
        raise SystemExit("--out names one file: give one --size with it")
    for size in sizes:
        out = HERE / (args.out or args.source.replace("_150", f"_{size}"))
        try:
            derive(source, size, out)
        except ValueError as e:
            raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
