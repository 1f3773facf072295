"""PyTorch's side of the training-step benchmark: img/s of one SGD step (forward, CE loss, backward, SGD with
momentum 0.9 and weight decay 5e-4) on random data, model.train().

    /usr/bin/python3 scripts/torch_train_bench.py [--arch vgg11_bn] [--head compact] [--batch 128] [--size 32]
        [--classes 10] [--steps 8] [--warmup 2] [--threads 2]

Prints one JSON line: per-step times (ms), the median, img/s at the median and at the best step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import VGG  # noqa: E402


def time_steps(model, opt, a):
    """Milliseconds of each SGD step after a.warmup untimed ones, on one random batch (a.batch, a.size, a.classes)."""
    crit = nn.CrossEntropyLoss()
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch,))
    times = []
    for k in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        dt = (time.perf_counter() - t0) * 1000
        if k >= a.warmup:
            times.append(dt)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vgg11_bn")
    ap.add_argument("--head", default="compact")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--width-divisor", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = VGG(a.arch, num_classes=a.classes, width_divisor=a.width_divisor, head=a.head, dropout=0.0)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    times = time_steps(model, opt, a)
    med = statistics.median(times)
    print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "arch": a.arch, "head": a.head, "batch": a.batch,
                      "size": a.size, "threads": torch.get_num_threads(), "ms": [round(t, 1) for t in times],
                      "median_ms": round(med, 1), "img_s": round(a.batch / med * 1000, 1),
                      "best_img_s": round(a.batch / min(times) * 1000, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
