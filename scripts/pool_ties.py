"""How often max-pool windows tie on Fashion-MNIST (bench/results/notes.md: why the tie rule of the pool's gradient matters).

    /usr/bin/python3 scripts/pool_ties.py [--images 128] [--width-divisor 1]

A vgg11_bn with torchvision's initialisation, in training mode, on the first training images prepared as `vgg train`
prepares them: 28x28 zero-padded to 32x32 and normalised with the training split's mean and std. Prints, for each
max-pool, the fraction of 2x2 windows whose maximum appears more than once, and of those at a positive maximum (ties
at zero or below get no gradient through the ReLU anyway).
"""

import argparse
import gzip

import numpy as np
import torch

DIR = "/usr/share/datasets/fashion-mnist"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--width-divisor", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(0)
    raw = np.frombuffer(gzip.open(f"{DIR}/train-images-idx3-ubyte.gz").read()[16:], np.uint8).astype(np.float32) / 255
    mean, std = float(raw.mean()), float(raw.std())
    x = torch.tensor(raw[: a.images * 784].reshape(a.images, 1, 28, 28))
    x = (torch.nn.functional.pad(x, (2, 2, 2, 2)) - mean) / std
    layers: list = []
    c_in = 1
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
            continue
        w = v // a.width_divisor
        conv = torch.nn.Conv2d(c_in, w, 3, padding=1)
        # torchvision's VGG initialisation
        torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
        layers += [conv, torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True)]
        c_in = w
    net = torch.nn.Sequential(*layers).train()
    h = x
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, torch.nn.MaxPool2d):
                n, c, hh, ww = h.shape
                win = h.reshape(n, c, hh // 2, 2, ww // 2, 2)
                top = win.amax(dim=(3, 5), keepdim=True)
                tied = (win == top).sum(dim=(3, 5)) > 1
                positive = top.squeeze(5).squeeze(3) > 0
                print(f"pool at {hh}x{ww}: {tied.float().mean():.3f} of windows tie, {(tied & positive).float().mean():.3f} at a positive maximum")
            h = layer(h)
    print(f"torch {torch.__version__}, {a.images} images, width /{a.width_divisor}")


if __name__ == "__main__":
    main()
