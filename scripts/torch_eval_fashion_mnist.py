"""Score a `vgg train` Fashion-MNIST checkpoint in PyTorch: an oracle for the test top-1 that `vgg eval` reports.

Loads the .safetensors (torchvision's key names) into scripts/reference_models.py's VGG, evaluates the 10,000 test
images as the trainer does (pixels / 255, zero-padded 28 -> 32, the checkpoint's mean/std), and prints single-crop
top-1 and the dense protocol at scale 28 (softmax of the image and its mirror averaged), as one JSON line.

    /usr/bin/python3 scripts/torch_eval_fashion_mnist.py runs/a/best.safetensors [/usr/share/datasets/fashion-mnist]
"""

import gzip
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import VGG  # noqa: E402

DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(body[a:b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"]).copy())
    return tensors, json.loads(meta["model"])


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    ckpt = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist"
    tensors, model_meta = read_safetensors(ckpt)
    opts = model_meta["options"]
    net = VGG(model_meta["arch"], num_classes=opts["numClasses"], in_channels=opts["inChannels"],
              width_divisor=opts["widthDivisor"], head=opts["head"])
    net.load_state_dict(tensors, strict=True)
    net.eval()
    images = torch.from_numpy(read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255.0)
    labels = torch.from_numpy(read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    size = opts["inputSize"]
    pad = (size - images.shape[1]) // 2
    x = torch.nn.functional.pad(images[:, None], (pad, size - images.shape[2] - pad, pad, size - images.shape[1] - pad))
    x = (x - model_meta["mean"][0]) / model_meta["std"][0]
    single, dense = 0, 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            xb, yb = x[i:i + 500], labels[i:i + 500]
            p = torch.softmax(net(xb), 1)
            pm = torch.softmax(net(torch.flip(xb, [3])), 1)
            single += (p.argmax(1) == yb).sum().item()
            dense += (((p + pm) / 2).argmax(1) == yb).sum().item()
    n = len(x)
    print(json.dumps({"weights": os.path.basename(ckpt), "n": n, "top1": single / n, "denseTop1": dense / n}))


if __name__ == "__main__":
    main()
