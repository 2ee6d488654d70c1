#!/usr/bin/env python3
"""Try to derive cheaper face-descriptor variants from the given networks without retraining.

Result (2026-12, onnxruntime 1.31, this repo's videos): dropping blocks gives nothing worth
shipping; a smaller crop (`--side 116`) gives a faster int8 network whose descriptors are only
comparable to its own (see below). Kept so the experiments can be rerun and improved (the way
forward for a cheaper approximation of the 150 descriptors is retraining or quantising a shallower
fp32 graph with calibration faces).

Needs only `pip install onnx onnxruntime numpy` (no torch).

What works: dropping residual blocks. The network (dlib's ResNet as ported by face-api) has ten
identity residual blocks `relu(x + conv(conv(x)))`; replacing one by `relu(x)` removes two 3x3
convolutions (7-8 % of the multiply-accumulates each). Measured on aligned Megamind.avi faces, one
dropped block moves descriptors by about 0.2-0.45 (0.6 separates people); the blocks of the
128-channel stage move them least. `shallow` drops conv32_2, conv64_2 and conv128_2: agreement
with fp32 97.4 % (mean distance 0.45), drop1 (conv128_2 only) 100 % (0.23); but cut out of the int8
(QDQ) graph they run SLOWER than int8-150 (about 7-12 ms vs 4.4-6.2 ms per face, one thread):
ONNX Runtime no longer fuses the quantised ops around the removed Add. Dropping blocks from the
fp32 graph and quantising again (with calibration faces) should fix that; not done.

Smaller input crops (`--side S`): a different function, usable against its own gallery. The graph
takes any side whose down-sampling chain fits its Pad nodes: dlib's add_prev zero-pads the smaller
branch at the end, the ONNX port has such a Pad only on the conv branch of the last two down blocks,
so the inputs of the first two must be odd. `resize` sets the input shape, recomputes those pads
(150: 35-17-8-4-2 before the global pool, pads 1 and 1; 116: 27-13-6-3-1, pads 1 and 0) and the
value_info; nodes and QDQ pairs are untouched, so ONNX Runtime fuses the same QLinear ops, and
`--side 150` rewrites the input files byte for byte. Admissible sides up to 150: 115-118,
131-134, 147-150. Below 147 the descriptors land about 1.1-1.3 from the fp32-150 ones (earlier
run on Megamind.avi faces, 132 and 116: agreement 0 %), so descriptors of different sides must never be compared: an S-side network serves only a
gallery of its own descriptors. int8-116 (`face_recognition_116_int8.onnx`) measured one thread,
batch 1, 300 alternating runs: 3.9 ms vs int8-150 5.9 ms (0.65x) vs fp32-150 9.2 ms; fp32 at 116
works too (0.67x of fp32-150).

Usage: python3 models/face/derive.py   # writes face_recognition_150_int8_shallow.onnx
       python3 models/face/derive.py --source face_recognition_150.onnx --drop conv128_2 --out x.onnx
       python3 models/face/derive.py --side 116   # writes face_recognition_116_int8.onnx
"""

import argparse
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = pathlib.Path(__file__).resolve().parent
BLOCKS = [f"conv{c}_{i}" for c, n in ((32, 3), (64, 3), (128, 2), (256, 2)) for i in range(1, n + 1)]
SHALLOW = ["conv32_2", "conv64_2", "conv128_2"]


def drop_blocks(model, blocks):
    """Turns each named block's residual Add into the identity on its shortcut, then removes the
    nodes nothing reads any more. Works on fp32 and QDQ int8 graphs (names keep the block prefix)."""
    found, rename = set(), {}
    for node in model.graph.node:
        if node.op_type != "Add":
            continue
        for block in blocks:
            branch = [i for i in node.input if i.startswith(f"{block}_conv2")]
            if branch:
                # Readers of the Add read the shortcut instead (no Identity node left behind: in
                # the int8 graph it would break ONNX Runtime's QDQ fusion and run slower).
                (shortcut,) = [i for i in node.input if i not in branch]
                rename[node.output[0]] = shortcut
                found.add(block)
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[k] = name
    missing = set(blocks) - found
    if missing:
        raise SystemExit(f"no residual Add for {sorted(missing)}; blocks are {BLOCKS}")
    used = {o.name for o in model.graph.output}
    kept = []
    for node in reversed(model.graph.node):
        if any(o in used for o in node.output):
            kept.append(node)
            used.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(kept))
    live = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)


def _spatial(model, side):
    """Spatial side of every tensor for a square input `side` (the graph is topologically sorted).
    Returns (sizes, first Add whose operands differ in size or None)."""
    pads = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    size = {model.graph.input[0].name: side}
    for node in model.graph.node:
        if not node.input or node.input[0] not in size:
            continue
        x = size[node.input[0]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Conv", "MaxPool", "AveragePool"):
            k, s, p = attrs["kernel_shape"][0], attrs.get("strides", [1])[0], attrs.get("pads", [0] * 4)
            x = (x + p[0] + p[2] - k) // s + 1
        elif node.op_type == "Pad":
            x += int(pads[node.input[1]][2] + pads[node.input[1]][6])
        elif node.op_type == "GlobalAveragePool":
            x = 1
        elif node.op_type in ("Flatten", "MatMul", "Gemm"):
            continue
        elif node.op_type == "Add" and size.get(node.input[1], x) != x:
            return size, node
        if x < 1:
            raise ValueError(f"{node.op_type} {node.output[0]} has no output at side {side}")
        size[node.output[0]] = x
    return size, None


def resize(model, side):
    """Makes the graph run on side x side crops. Only the input shape, the spatial pads of the Pad
    nodes that zero-pad a down-sampling block's conv branch (dlib's add_prev pads the smaller operand
    with zeros at the end) and value_info change, so QDQ pairs and ORT's fusion are kept. Raises
    ValueError when a block's branches differ and the smaller one has no Pad node to grow."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    spatial_pads = [n for n in graph.node if n.op_type == "Pad"
                    and numpy_helper.to_array(inits[n.input[1]])[[2, 3, 6, 7]].any()]
    for node in spatial_pads:
        pads = numpy_helper.to_array(inits[node.input[1]]).copy()
        pads[[2, 3, 6, 7]] = 0
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(pads, node.input[1]))
    while True:
        size, add = _spatial(model, side)
        if add is None:
            break
        small = min(add.input, key=lambda name: size[name])
        node = producer[small]
        while node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node = producer[node.input[0]]
        if node not in spatial_pads:
            raise ValueError(f"{add.output[0]}: branches {sorted(size[i] for i in add.input)} at side "
                             f"{side} and no Pad on the smaller one")
        pads = numpy_helper.to_array(inits[node.input[1]]).copy()
        pads[[6, 7]] += abs(size[add.input[0]] - size[add.input[1]])
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(pads, node.input[1]))
    for value in list(graph.input) + list(graph.value_info):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and value.name in size:
            dims[2].dim_value = dims[3].dim_value = size[value.name]
    return size


def admissible(model, sides):
    """The sides among `sides` that resize() accepts (on a copy of model)."""
    ok = []
    for side in sides:
        try:
            resize(onnx.ModelProto.FromString(model.SerializeToString()), side)
            ok.append(side)
        except ValueError:
            pass
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="face_recognition_150_int8.onnx")
    parser.add_argument("--drop", action="append", choices=BLOCKS, help=f"default: {SHALLOW}")
    parser.add_argument("--side", type=int, help="run on SIDE x SIDE crops (no blocks dropped "
                        "unless --drop); default --out: the source's name with 150 -> SIDE")
    parser.add_argument("--out")
    args = parser.parse_args()
    model = onnx.load(HERE / args.source)
    side = args.side or 150
    if args.drop or not args.side:
        drop_blocks(model, args.drop or SHALLOW)
    if args.side:
        try:
            size = resize(model, side)
        except ValueError as error:
            ok = admissible(onnx.load(HERE / args.source), range(16, 151))
            raise SystemExit(f"{error}; admissible sides up to 150: {ok}")
        stages = {size[n.output[0]] for n in model.graph.node if n.op_type == "Add"}
        print(f"side {side}: down-sampling chain", "-".join(map(str, sorted(stages, reverse=True))))
    args.out = args.out or (args.source.replace("_150", f"_{side}") if args.side
                            else "face_recognition_150_int8_shallow.onnx")
    onnx.checker.check_model(model)
    out = HERE / args.out
    onnx.save(model, out)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(out), options)
    crops = np.random.default_rng(0).uniform(0, 255, (2, 3, side, side)).astype(np.float32)
    (descriptors,) = session.run(None, {"input": crops})
    assert descriptors.shape == (2, 128), descriptors.shape
    print(f"{out.name}: {out.stat().st_size} bytes, runs")


if __name__ == "__main__":
    main()
