#!/usr/bin/env python3
"""Try to derive cheaper face-descriptor variants from the given networks without retraining.

Result (2026-12, onnxruntime 1.31, this repo's videos): neither approach below gives a variant worth
shipping, so the catalog holds only fp32-150 and int8-150 and this script's outputs are not
committed. Kept so the experiment can be rerun and improved (the way forward is retraining or
quantising a shallower fp32 graph with calibration faces).

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

What does not: smaller input crops. The graph admits only sides whose down-sampling chain fits
its pads, and any side below 147 changes the chain (150: 35-17-8-4-2 before the global pool; 132:
31-15-7-3-1): the descriptors then land about 1.1-1.3 from the fp32 ones, i.e. a different
function, not an approximation (tried at 132 and 116 with the pads recomputed: agreement 0 %).
Nothing below 147 is possible without retraining.

Usage: python3 models/face/derive.py   # writes face_recognition_150_int8_shallow.onnx
       python3 models/face/derive.py --source face_recognition_150.onnx --drop conv128_2 --out x.onnx
"""

import argparse
import pathlib

import numpy as np
import onnx
import onnxruntime as ort

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="face_recognition_150_int8.onnx")
    parser.add_argument("--drop", action="append", choices=BLOCKS, help=f"default: {SHALLOW}")
    parser.add_argument("--out", default="face_recognition_150_int8_shallow.onnx")
    args = parser.parse_args()
    model = onnx.load(HERE / args.source)
    drop_blocks(model, args.drop or SHALLOW)
    onnx.checker.check_model(model)
    out = HERE / args.out
    onnx.save(model, out)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(out), options)
    crops = np.random.default_rng(0).uniform(0, 255, (2, 3, 150, 150)).astype(np.float32)
    (descriptors,) = session.run(None, {"input": crops})
    assert descriptors.shape == (2, 128), descriptors.shape
    print(f"{out.name}: {out.stat().st_size} bytes, runs")


if __name__ == "__main__":
    main()
