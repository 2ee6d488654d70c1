#!/usr/bin/env python3
"""Trains the MCDNN variant family on Fashion-MNIST and writes ONNX files + catalog.json.

Run time on the project's 2-core machine (CPU only): about 27 minutes (26m33s measured, sharing the 2 cores with
builds; it trains 4 families x 5 epochs plus 2 fine-tuning epochs).

Reproduce (from the repo root):
    python3 -m venv /tmp/trainenv
    /tmp/trainenv/bin/pip install torch==2.15.0 onnx==1.23.2 onnxscript==0.7.2 \
        onnxruntime==1.31.1 numpy==2.4.6
    sudo apt-get install dataset-fashion-mnist
    /tmp/trainenv/bin/python models/train.py --out models

Every variant is a trunk (image -> embedding) plus one head per app (embedding -> logits), so one
trunk run per frame serves both apps: MCDNN's model sharing. Apps:
  - garment:  the 10 Fashion-MNIST classes;
  - category: a coarser grouping (top / bottom-or-dress / footwear / bag).
Variants: full CNN, half and quarter width, shallow (one conv layer), low-rank (SVD of the largest
layers of `full`, then fine-tuned) and int8 (static post-training quantisation of `full`).
Accuracy in catalog.json is measured with onnxruntime on the exported files over the 10k test set.
"""

import argparse
import gzip
import hashlib
import json
import os
import struct
import time

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat,
                                      QuantType, quantize_static)

DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
GARMENT = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
CATEGORY = ["top", "bottom-or-dress", "footwear", "bag"]
# Dataset label -> category index.
CATEGORY_OF = [0, 1, 0, 1, 0, 2, 0, 2, 3, 2]
APPS = [("garment", GARMENT, list(range(10))), ("category", CATEGORY, CATEGORY_OF)]

# Energy/latency coefficients per device class. They are not measured here: they scale the MCDNN
# authors' phone measurements (deepface D0: 1 GFLOP, 3.44 J, 167 ms, 394 MB loaded with 13.2 J in
# 2.5 s) to other classes so that the scheduler sees realistic ratios between compute and paging.
DEVICE_CLASSES = [
    {"name": "bodycam-lite", "joules_per_gop": 5.0, "ms_per_gop": 400.0, "joules_per_request": 0.004,
     "ms_per_request": 2.0, "load_joules_per_mb": 0.05, "load_ms_per_mb": 12.0, "int8_speedup": 2.5},
    {"name": "phone-2016", "joules_per_gop": 3.44, "ms_per_gop": 167.0, "joules_per_request": 0.003,
     "ms_per_request": 1.0, "load_joules_per_mb": 0.034, "load_ms_per_mb": 6.4, "int8_speedup": 2.0},
    {"name": "laptop", "joules_per_gop": 1.0, "ms_per_gop": 20.0, "joules_per_request": 0.002,
     "ms_per_request": 0.5, "load_joules_per_mb": 0.01, "load_ms_per_mb": 2.0, "int8_speedup": 1.5},
    {"name": "server", "joules_per_gop": 0.3, "ms_per_gop": 2.0, "joules_per_request": 0.0,
     "ms_per_request": 0.2, "load_joules_per_mb": 0.0, "load_ms_per_mb": 1.0, "int8_speedup": 1.5},
]


def read_idx(path, want_dims):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    assert magic >> 8 == 0x08 and dims == want_dims, f"{path}: bad magic {magic:#x}"
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    assert arr.size == int(np.prod(shape)), f"{path}: truncated"
    return arr.reshape(shape)


def load(split):
    images = read_idx(f"{DATA}/{split}-images-idx3-ubyte.gz", 3)
    labels = read_idx(f"{DATA}/{split}-labels-idx1-ubyte.gz", 1)
    x = ((images.astype(np.float32) / 255.0) - MEAN) / STD
    return x[:, None, :, :].astype(np.float32), labels.astype(np.int64)


class ConvTrunk(nn.Module):
    """conv(c1) -> pool -> [conv(c2) -> pool] -> fc(embedding)."""

    def __init__(self, c1, c2, emb, shallow=False, conv_rank=None, fc_rank=None):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.shallow = shallow
        if shallow:
            flat = c1 * 7 * 7
        else:
            if conv_rank:
                # Low-rank conv: 3x3 into `conv_rank` channels, then 1x1 up to c2.
                self.conv2 = nn.Sequential(nn.Conv2d(c1, conv_rank, 3, padding=1, bias=False),
                                           nn.Conv2d(conv_rank, c2, 1))
            else:
                self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
            flat = c2 * 7 * 7
        if fc_rank:
            self.fc = nn.Sequential(nn.Linear(flat, fc_rank, bias=False), nn.Linear(fc_rank, emb))
        else:
            self.fc = nn.Linear(flat, emb)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        if self.shallow:
            x = F.max_pool2d(x, 4)
        else:
            x = F.max_pool2d(x, 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(torch.flatten(x, 1)))


class Family(nn.Module):
    def __init__(self, trunk, emb):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict({name: nn.Linear(emb, len(classes)) for name, classes, _ in APPS})

    def forward(self, x):
        e = self.trunk(x)
        return {name: head(e) for name, head in self.heads.items()}


def count_ops(module, shape):
    """Floating-point operations (2 x multiply-adds) for one input of `shape`, by forward hooks."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total[0] += 2 * k * out.numel()
        elif isinstance(m, nn.Linear):
            total[0] += 2 * m.in_features * m.out_features

    hooks = [m.register_forward_hook(hook) for m in module.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(torch.zeros(shape))
    for h in hooks:
        h.remove()
    return total[0]


def train(model, x, y, epochs, lr=1e-3, seed=0):
    torch.manual_seed(seed)
    cat_of = torch.tensor(CATEGORY_OF)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * (len(x) // 128 + 1))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            out = model(xt[idx])
            loss = F.cross_entropy(out["garment"], yt[idx]) + \
                F.cross_entropy(out["category"], cat_of[yt[idx]])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"  epoch {epoch + 1}/{epochs} loss {loss.item():.3f}", flush=True)
    model.eval()
    return model


def lowrank_from(full, conv_rank, fc_rank):
    """Factorises full's conv2 and fc by truncated SVD; conv1 and heads are copied."""
    lr = Family(ConvTrunk(32, 64, 256, conv_rank=conv_rank, fc_rank=fc_rank), 256)
    with torch.no_grad():
        lr.trunk.conv1.load_state_dict(full.trunk.conv1.state_dict())
        lr.heads.load_state_dict(full.heads.state_dict())
        w = full.trunk.conv2.weight  # [64, 32, 3, 3]
        u, s, vt = torch.linalg.svd(w.reshape(64, -1), full_matrices=False)
        r = conv_rank
        lr.trunk.conv2[0].weight.copy_((s[:r, None].sqrt() * vt[:r]).reshape(r, 32, 3, 3))
        lr.trunk.conv2[1].weight.copy_((u[:, :r] * s[:r].sqrt()).reshape(64, r, 1, 1))
        lr.trunk.conv2[1].bias.copy_(full.trunk.conv2.bias)
        u, s, vt = torch.linalg.svd(full.trunk.fc.weight, full_matrices=False)  # [256, 3136]
        r = fc_rank
        lr.trunk.fc[0].weight.copy_(s[:r, None].sqrt() * vt[:r])
        lr.trunk.fc[1].weight.copy_(u[:, :r] * s[:r].sqrt())
        lr.trunk.fc[1].bias.copy_(full.trunk.fc.bias)
    return lr


def export(module, shape, path, in_name, out_name):
    torch.onnx.export(module, torch.zeros(shape), path, input_names=[in_name],
                      output_names=[out_name], dynamic_axes={in_name: {0: "batch"},
                                                             out_name: {0: "batch"}},
                      opset_version=17, dynamo=False)


class Calibration(CalibrationDataReader):
    def __init__(self, x):
        self.batches = iter([{"image": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.batches, None)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_spec(out, name):
    path = os.path.join(out, name)
    return {"file": name, "sha256": sha256(path), "bytes": os.path.getsize(path)}


def onnx_accuracy(out, trunk_file, head_files, x, y):
    """Accuracy per app, in percent, measured with onnxruntime on the exported files."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    trunk = ort.InferenceSession(os.path.join(out, trunk_file), opts)
    emb = np.concatenate([trunk.run(None, {"image": x[i:i + 500]})[0]
                          for i in range(0, len(x), 500)])
    acc = {}
    for app, _, label_map in APPS:
        head = ort.InferenceSession(os.path.join(out, head_files[app]), opts)
        pred = head.run(None, {"embedding": emb})[0].argmax(1)
        truth = np.array(label_map)[y]
        acc[app] = round(float((pred == truth).mean() * 100.0), 2)
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images (smoke test)")
    args = ap.parse_args()
    out = args.out
    torch.set_num_threads(2)
    started = time.time()
    xtr, ytr = load("train")
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    xte, yte = load("t10k")

    shape = (1, 1, 28, 28)
    families = {}
    specs = [
        ("full", "full", "conv 32-64, fc 256", lambda: Family(ConvTrunk(32, 64, 256), 256)),
        ("half", "narrow", "half width: conv 16-32, fc 128", lambda: Family(ConvTrunk(16, 32, 128), 128)),
        ("quarter", "narrow", "quarter width: conv 8-16, fc 64", lambda: Family(ConvTrunk(8, 16, 64), 64)),
        ("shallow", "shallow", "one conv layer (32), pool 4, fc 128",
         lambda: Family(ConvTrunk(32, 0, 128, shallow=True), 128)),
    ]
    for name, _, _, make in specs:
        print(f"training {name}", flush=True)
        families[name] = train(make(), xtr, ytr, args.epochs, seed=len(families))
    print("low-rank: SVD of full's conv2 (rank 16) and fc (rank 32), fine-tuned 2 epochs", flush=True)
    families["lowrank"] = train(lowrank_from(families["full"], 16, 32), xtr, ytr, 2, lr=3e-4, seed=9)

    variants = []
    kinds = {name: (kind, desc) for name, kind, desc, _ in specs}
    kinds["lowrank"] = ("lowrank", "full with conv2 rank 16 and fc rank 32 (SVD), fine-tuned")
    for name, fam in families.items():
        trunk_file = f"{name}.trunk.onnx"
        export(fam.trunk, shape, os.path.join(out, trunk_file), "image", "embedding")
        emb_dim = fam.heads["garment"].in_features
        heads = {}
        for app, _, _ in APPS:
            heads[app] = f"{name}.{app}.head.onnx"
            export(fam.heads[app], (1, emb_dim), os.path.join(out, heads[app]), "embedding", "logits")
        variants.append(describe(out, name, kinds[name], fam, trunk_file, heads, emb_dim, xte, yte))

    print("int8: static quantisation of full's trunk (QOperator, per-channel, 1000 calibration images)")
    quantize_static(os.path.join(out, "full.trunk.onnx"), os.path.join(out, "int8.trunk.onnx"),
                    Calibration(xtr[:1000]), quant_format=QuantFormat.QOperator, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    full_heads = {app: f"full.{app}.head.onnx" for app, _, _ in APPS}
    variants.append(describe(out, "int8", ("int8", "full's trunk quantised to int8; full's heads"),
                             families["full"], "int8.trunk.onnx", full_heads, 256, xte, yte))

    manifest = {
        "source": "Trained by models/train.py on Debian's dataset-fashion-mnist (60k train, 10k "
                  "test); accuracy measured with onnxruntime 1.31 on the 10k test images.",
        "input": {"height": 28, "width": 28, "mean": MEAN, "std": STD},
        "apps": [{"name": n, "classes": c, "label_map": m} for n, c, m in APPS],
        "variants": variants,
        "device_classes": DEVICE_CLASSES,
    }
    with open(os.path.join(out, "catalog.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"done in {time.time() - started:.0f} s")


def describe(out, name, kind_desc, fam, trunk_file, heads, emb_dim, xte, yte):
    kind, desc = kind_desc
    acc = onnx_accuracy(out, trunk_file, heads, xte, yte)
    print(f"  {name}: {acc}", flush=True)
    return {
        "name": name, "kind": kind, "description": desc,
        "trunk": file_spec(out, trunk_file),
        "trunk_ops": count_ops(fam.trunk, (1, 1, 28, 28)),
        "embedding_dim": emb_dim,
        "params": sum(p.numel() for p in fam.parameters()),
        "heads": [dict(app=app, **file_spec(out, heads[app]),
                       ops=2 * emb_dim * fam.heads[app].out_features, accuracy=acc[app])
                  for app, _, _ in APPS],
    }


if __name__ == "__main__":
    main()
