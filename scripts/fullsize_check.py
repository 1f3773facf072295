"""Full-size torchvision reference for one test: a real-sized state_dict, an input and its eval-mode logits.

    /usr/bin/python3 scripts/fullsize_check.py --arch vgg16 --dir /tmp/x [--legacy] [--seed 0]

Writes <dir>/<arch>.pth (torchvision's state_dict, torch.save zip format, or the legacy format with --legacy),
<dir>/x.npy (float32, 2x3x224x224, N(0, 1)) and <dir>/logits.npy (float32, 2x1000, model.eval()). The model is
torchvision's own (random init after torch.manual_seed(seed)), with BatchNorm statistics made non-trivial for the
_bn archs. Prints one JSON line describing what it wrote. Takes ~10-30 s on 2 cores (mostly writing ~530 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torchvision

ARCHS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=ARCHS)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--legacy", action="store_true", help="save with _use_new_zipfile_serialization=False")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, args.arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(args.batch, 3, 224, 224, dtype=torch.float32)
    with torch.no_grad():
        logits = model(x)

    os.makedirs(args.dir, exist_ok=True)
    weights = os.path.join(args.dir, f"{args.arch}.pth")
    if args.legacy:
        torch.save(model.state_dict(), weights, _use_new_zipfile_serialization=False)
    else:
        torch.save(model.state_dict(), weights)
    np.save(os.path.join(args.dir, "x.npy"), x.numpy(), allow_pickle=False)
    np.save(os.path.join(args.dir, "logits.npy"), logits.numpy().astype(np.float32), allow_pickle=False)
    print(json.dumps({
        "arch": args.arch, "format": "legacy" if args.legacy else "zip", "weights": weights,
        "input": os.path.join(args.dir, "x.npy"), "logits": os.path.join(args.dir, "logits.npy"),
        "shape": list(logits.shape), "logitsAbsMax": float(logits.abs().max()),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "seconds": round(time.time() - t0, 1),
    }))


if __name__ == "__main__":
    main()
