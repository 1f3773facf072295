"""Writes the training-step fixtures in test/fixtures/train/ that test/train-step-torch.test.ts compares against.

    /usr/bin/python3 scripts/make_train_fixtures.py [--out test/fixtures/train]

For every case: a small model (scripts/reference_models.py: torchvision's structure and key names), its initial
state_dict, one batch, and what ONE torch.optim.SGD step (lr 0.1, momentum 0.9, weight_decay 5e-4, model.train())
does: the loss before the step, top-1/top-5 hits, and the update (new minus old) of every state_dict tensor (BN
running statistics and num_batches_tracked included) and of every momentum buffer (from zero: torch's first step
sets buf = d_p). Some cases vary the recipe (Nesterov, label smoothing, two steps, no decay on BN and biases), one
the batch (images on a constant background, where max-pool windows tie).

Files (safetensors, written here without the safetensors package):
    batch_n{N}.safetensors             x float32 [N, 3, 32, 32], y int64 [N]
    batch_background_n{N}.safetensors  the same on a constant background (tied max-pool windows)
    {case}.init.safetensors            the state_dict before the step
    {case}.update.safetensors          "<key>" = new - old for each state_dict key, "<key>.momentum_buffer" = the
                                       buffer after the step(s); metadata: loss (first step), correct1, correct5
    manifest.json                      the cases with their options
Seeds are fixed, so re-running gives the same numbers (to float rounding: another machine's BLAS may differ in the last
bits; the test's tolerance is far above that). Size limits: every file < 300 KB, the folder < 3.2 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from typing import Dict, List

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import VGG, init_for_fixtures  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILE = 300_000
MAX_TOTAL = 3_200_000

ARCHS = ["vgg11", "vgg11_lrn", "vgg13", "vgg16_1x1", "vgg16", "vgg19"]

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str] | None = None) -> None:
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs: List[bytes] = []
    off = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        b = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def make_batch(n: int, seed: int, classes: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def make_background_batch(n: int, seed: int, classes: int):
    """Images on a constant background, as Fashion-MNIST's: max-pool windows tie there (PyTorch's gradient goes to
    the first maximum of a window)."""
    x, y = make_batch(n, seed, classes)
    g = torch.Generator().manual_seed(seed + 1)
    for i in range(n):
        t, l = (int(v) for v in torch.randint(4, 14, (2,), generator=g))
        inside = x[i, :, t:t + 14, l:l + 14].clone()
        x[i] = -0.8
        x[i, :, t:t + 14, l:l + 14] = inside
    return x, y


def batch_name(case: dict) -> str:
    return f"batch_{case.get('batchKind', '')}{'_' if 'batchKind' in case else ''}n{case['batch']}"


def run_case(out: str, case: dict, batches: Dict[str, tuple]) -> dict:
    torch.manual_seed(0)
    model = VGG(case["arch"], num_classes=case["classes"], width_divisor=case["widthDivisor"], head=case["head"],
                dropout=0.0)
    init_for_fixtures(model, case["seed"])
    x, y = batches[batch_name(case)]
    init = {k: v.clone() for k, v in model.state_dict().items()}
    params = model.parameters()
    if case.get("decayExempt") == "bn_and_bias":
        decay, no_decay = [], []
        for mod in model.modules():
            for pname, p in mod.named_parameters(recurse=False):
                (no_decay if isinstance(mod, nn.BatchNorm2d) or pname == "bias" else decay).append(p)
        params = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.SGD(params, lr=case["lr"], momentum=0.9, weight_decay=5e-4, nesterov=case.get("nesterov", False))
    crit = nn.CrossEntropyLoss(label_smoothing=case.get("labelSmoothing", 0.0))
    model.train()
    first = None
    for _ in range(case.get("steps", 1)):
        opt.zero_grad()
        logits = model(x)
        loss = crit(logits, y)
        if first is None:
            top5 = logits.topk(min(5, case["classes"]), dim=1).indices
            first = {
                "loss": loss.item(),
                "correct1": int((top5[:, 0] == y).sum()),
                "correct5": int((top5 == y[:, None]).any(dim=1).sum()),
            }
        loss.backward()
        opt.step()
    new = model.state_dict()
    update = {k: (new[k] - init[k]) for k in init}
    name_of = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            update[name_of[id(p)] + ".momentum_buffer"] = opt.state[p]["momentum_buffer"].clone()
    name = case["name"]
    write_safetensors(os.path.join(out, f"{name}.init.safetensors"), init)
    write_safetensors(os.path.join(out, f"{name}.update.safetensors"), update,
                      {k: repr(v) for k, v in first.items()})
    return {**case, **first}


def cases() -> List[dict]:
    out = []
    for arch in ARCHS:
        for bn in (False, True):
            a = arch + ("_bn" if bn else "")
            out.append({"name": f"{a}_compact_d32", "arch": a, "head": "compact", "widthDivisor": 32, "classes": 10,
                        "batch": 4 if arch in ("vgg16", "vgg19") else 8, "lr": 0.1, "seed": 100 + len(out)})
    # The paper head (adaptive 7x7 pool of a 1x1 map, FC-64, FC-64, FC-10 at divisor 64).
    out.append({"name": "vgg11_bn_paper_d64", "arch": "vgg11_bn", "head": "paper", "widthDivisor": 64, "classes": 10,
                "batch": 4, "lr": 0.1, "seed": 200})
    # Recipe variants on a small model.
    out.append({"name": "vgg11_bn_compact_d32_nesterov_ls", "arch": "vgg11_bn", "head": "compact", "widthDivisor": 32,
                "classes": 10, "batch": 8, "lr": 0.1, "seed": 201, "nesterov": True, "labelSmoothing": 0.1})
    out.append({"name": "vgg11_bn_compact_d32_3steps", "arch": "vgg11_bn", "head": "compact", "widthDivisor": 32,
                "classes": 10, "batch": 8, "lr": 0.05, "seed": 202, "steps": 3})
    out.append({"name": "vgg13_bn_compact_d32_nodecay", "arch": "vgg13_bn", "head": "compact", "widthDivisor": 32,
                "classes": 10, "batch": 4, "lr": 0.1, "seed": 203, "decayExempt": "bn_and_bias"})
    # A batch on a constant background: tied max-pool windows.
    out.append({"name": "vgg11_bn_compact_d32_background", "arch": "vgg11_bn", "head": "compact", "widthDivisor": 32,
                "classes": 10, "batch": 4, "batchKind": "background", "lr": 0.1, "seed": 204})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "train"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    cs = cases()
    makers = {"": make_batch, "background": make_background_batch}
    batches = {batch_name(c): makers[c.get("batchKind", "")](c["batch"], 7 + c["batch"], 10) for c in cs}
    for name, (x, y) in batches.items():
        write_safetensors(os.path.join(a.out, f"{name}.safetensors"), {"x": x, "y": y})
    manifest = [run_case(a.out, c, batches) for c in cs]
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump({"cases": manifest, "torch": torch.__version__}, f, indent=1)
        f.write("\n")
    total = 0
    for fn in sorted(os.listdir(a.out)):
        size = os.path.getsize(os.path.join(a.out, fn))
        total += size
        assert size < MAX_FILE, f"{fn} is {size} bytes (limit {MAX_FILE})"
    assert total < MAX_TOTAL, f"fixtures total {total} bytes (limit {MAX_TOTAL})"
    for c in manifest:
        print(f"{c['name']:36s} loss {c['loss']:.5f} top1 {c['correct1']} top5 {c['correct5']}")
    print(f"{len(manifest)} cases, {total / 1e6:.2f} MB in {a.out}")


if __name__ == "__main__":
    main()
