"""PyTorch's side of the fine-tuning benchmark (bench/finetune.ts): per-step time of SGD (momentum 0.9, weight decay
5e-4, CE loss) on random data, either the whole net in train mode or with `features` frozen as torchvision users do
(requires_grad=False on its parameters, features.eval(); the optimizer holds the classifier only).

    /usr/bin/python3 scripts/torch_finetune_bench.py [--arch vgg16] [--head paper] [--batch 8] [--size 224]
        [--classes 10] [--freeze features|none] [--steps 3] [--warmup 2] [--threads 2]

Prints one JSON line: per-step times (ms), the median, img/s at the median, the process's CPU seconds and peak RSS.
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
from torch_train_bench import time_steps  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vgg16")
    ap.add_argument("--head", default="paper")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--freeze", choices=["features", "none"], default="features")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    # Dropout 0, as in bench/train.ts: both sides then do the same work.
    model = VGG(a.arch, num_classes=a.classes, head=a.head, dropout=0.0)
    model.train()
    if a.freeze == "features":
        for p in model.features.parameters():
            p.requires_grad_(False)
        model.features.eval()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=5e-4)
    times = time_steps(model, opt, a)
    med = statistics.median(times)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"engine": "pytorch", "torch": torch.__version__, "arch": a.arch, "head": a.head, "batch": a.batch,
                      "size": a.size, "freeze": a.freeze, "threads": torch.get_num_threads(),
                      "ms": [round(t, 1) for t in times], "median_ms": round(med, 1),
                      "img_s": round(a.batch / med * 1000, 2), "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
                      "peak_rss_mb": round(ru.ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
