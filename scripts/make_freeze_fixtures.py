"""Writes the fine-tuning fixtures in test/fixtures/train/freeze/ that test/train-freeze.test.ts compares against.

    /usr/bin/python3 scripts/make_freeze_fixtures.py [--out test/fixtures/train/freeze]

`vgg train --freeze PART` as torchvision users fine-tune: every parameter of the frozen modules gets
requires_grad=False, the frozen modules run in eval mode (BatchNorm on its running statistics, which stay as they are;
dropout off) while the rest is in train mode, and torch.optim.SGD (lr 0.1, momentum 0.9, weight_decay 5e-4) holds the
trainable parameters only. PART is `features` (all of model.features) or a tap: that tap's module and everything
before it. Three steps on one batch.

Files (safetensors; see make_train_fixtures.py):
    batch_n8.safetensors             x float32 [8, 3, 32, 32], y int64 [8]
    {model}.init.safetensors         the state_dict before the steps (one per model, shared by its cases)
    {case}.update.safetensors        "<key>" = new - old for every state_dict key that is NOT frozen, and
                                     "<key>.momentum_buffer" for every trainable parameter; metadata: loss (first step)
    manifest.json                    the cases, each with its frozen keys (parameters and buffers of frozen modules)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_train_fixtures import make_batch, write_safetensors  # noqa: E402
from reference_models import VGG, init_for_fixtures  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_TOTAL = 600_000

MODELS = {
    # Small enough to store, BN everywhere so that frozen BN (eval mode) and trained BN (batch statistics) both occur.
    "vgg11_bn_compact_d32": dict(arch="vgg11_bn", head="compact", width_divisor=32, seed=300),
    # The paper head (FC-64, FC-64, FC-10 at divisor 64), for a boundary inside the classifier.
    "vgg11_bn_paper_d64": dict(arch="vgg11_bn", head="paper", width_divisor=64, seed=301),
}

CASES = [
    {"name": "vgg11_bn_compact_d32_features", "model": "vgg11_bn_compact_d32", "freeze": "features"},
    {"name": "vgg11_bn_compact_d32_pool2", "model": "vgg11_bn_compact_d32", "freeze": "pool2"},
    # relu1_1 is followed by pool1: the ReLU-into-pool fusion must not cross the boundary.
    {"name": "vgg11_bn_compact_d32_relu1_1", "model": "vgg11_bn_compact_d32", "freeze": "relu1_1"},
    {"name": "vgg11_bn_paper_d64_fc6", "model": "vgg11_bn_paper_d64", "freeze": "fc6"},
]

BATCH = 8
CLASSES = 10
LR = 0.1
STEPS = 3


def build(model_name: str) -> VGG:
    spec = MODELS[model_name]
    torch.manual_seed(0)
    model = VGG(spec["arch"], num_classes=CLASSES, width_divisor=spec["width_divisor"], head=spec["head"], dropout=0.0)
    init_for_fixtures(model, spec["seed"])
    return model


def frozen_modules(model: VGG, part: str) -> List[nn.Module]:
    if part == "features":
        return list(model.features)
    if part in model.feature_taps:
        return list(model.features[: model.feature_taps[part] + 1])
    if part in model.classifier_taps:
        return list(model.features) + [model.avgpool] + list(model.classifier[: model.classifier_taps[part] + 1])
    raise ValueError(f"unknown part {part!r}")


def frozen_keys(model: VGG, mods: List[nn.Module]) -> List[str]:
    ids = {id(m) for m in mods}
    out = []
    for mname, m in model.named_modules():
        if id(m) in ids:
            out += [f"{mname}.{k}" for k, _ in m.named_parameters(recurse=False)]
            out += [f"{mname}.{k}" for k, _ in m.named_buffers(recurse=False)]
    return out


def run_case(out: str, case: dict, batch) -> dict:
    model = build(case["model"])
    x, y = batch
    init = {k: v.clone() for k, v in model.state_dict().items()}
    mods = frozen_modules(model, case["freeze"])
    for m in mods:
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)
    model.train()
    for m in mods:
        m.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=LR, momentum=0.9, weight_decay=5e-4)
    crit = nn.CrossEntropyLoss()
    first = None
    for _ in range(STEPS):
        opt.zero_grad()
        loss = crit(model(x), y)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    frozen = frozen_keys(model, mods)
    new = model.state_dict()
    for k in frozen:
        assert torch.equal(new[k], init[k]), f"torch changed frozen {k}"
    update = {k: new[k] - init[k] for k in init if k not in frozen}
    name_of = {id(p): n for n, p in model.named_parameters()}
    for p in trainable:
        update[name_of[id(p)] + ".momentum_buffer"] = opt.state[p]["momentum_buffer"].clone()
    write_safetensors(os.path.join(out, f"{case['name']}.update.safetensors"), update, {"loss": repr(first)})
    spec = MODELS[case["model"]]
    return {**case, "arch": spec["arch"], "head": spec["head"], "widthDivisor": spec["width_divisor"], "classes": CLASSES,
            "batch": BATCH, "lr": LR, "steps": STEPS, "loss": first, "frozen": frozen}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "train", "freeze"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    batch = make_batch(BATCH, 31, CLASSES)
    write_safetensors(os.path.join(a.out, f"batch_n{BATCH}.safetensors"), {"x": batch[0], "y": batch[1]})
    for name in MODELS:
        write_safetensors(os.path.join(a.out, f"{name}.init.safetensors"), build(name).state_dict())
    manifest = [run_case(a.out, c, batch) for c in CASES]
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump({"cases": manifest, "torch": torch.__version__}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(a.out, fn)) for fn in os.listdir(a.out))
    assert total < MAX_TOTAL, f"fixtures total {total} bytes (limit {MAX_TOTAL})"
    for c in manifest:
        print(f"{c['name']:34s} loss {c['loss']:.5f}, {len(c['frozen'])} frozen tensors")
    print(f"{len(manifest)} cases, {total / 1e6:.2f} MB in {a.out}")


if __name__ == "__main__":
    main()
