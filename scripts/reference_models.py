"""PyTorch reference of the VGG family (Simonyan & Zisserman, Table 1), for fixtures and tests only.

The module structure mirrors torchvision's ``VGG`` exactly (``features`` / ``avgpool`` / ``classifier``), so with
width divisor 1, the paper head and 1000 classes the ``state_dict`` keys and shapes are torchvision's. Run this file
to check that against torchvision and against the parameter counts in DESIGN.md.

Names follow the paper, not torchvision's config letters:
    A = vgg11, A-LRN = vgg11_lrn, B = vgg13, C = vgg16_1x1 (with 1x1 convs), D = vgg16, E = vgg19,
each also with ``_bn`` (BatchNorm after every conv, before the ReLU).

Run with Debian's interpreter: ``/usr/bin/python3 scripts/reference_models.py``.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import torch
from torch import nn

# Table 1 as data. An int c is conv3-c; ("1x1", c) is conv1-c; "M" is a 2x2 max-pool with stride 2.
Layer = Union[int, Tuple[str, int], str]

CONFIGS: Dict[str, List[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, ("1x1", 256), "M", 512, 512, ("1x1", 512), "M",
          512, 512, ("1x1", 512), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}

# Paper name -> (config, batch norm?)
ARCHS: Dict[str, Tuple[str, bool]] = {}
for _name, _cfg in [("vgg11", "A"), ("vgg11_lrn", "A-LRN"), ("vgg13", "B"), ("vgg16_1x1", "C"),
                    ("vgg16", "D"), ("vgg19", "E")]:
    ARCHS[_name] = (_cfg, False)
    ARCHS[_name + "_bn"] = (_cfg, True)

# The archs torchvision also has (same names, same structure).
TORCHVISION_ARCHS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

# DESIGN.md: parameter counts with 1000 classes, torchvision's head.
PARAM_COUNTS = {
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840,
    "vgg11_lrn": 132_863_336, "vgg11_lrn_bn": 132_868_840,
    "vgg13": 133_047_848, "vgg13_bn": 133_053_736,
    "vgg16_1x1": 133_638_952, "vgg16_1x1_bn": 133_647_400,
    "vgg16": 138_357_544, "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240, "vgg19_bn": 143_678_248,
}

LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)


def scaled(c: int, width_divisor: int) -> int:
    return max(1, c // width_divisor)


def make_features(cfg: Sequence[Layer], batch_norm: bool, lrn: bool, in_channels: int,
                  width_divisor: int) -> Tuple[nn.Sequential, Dict[str, int], int]:
    """Returns (features, taps, out_channels); taps maps 'relu{b}_{i}' / 'pool{b}' to the index in features."""
    layers: List[nn.Module] = []
    taps: Dict[str, int] = {}
    c_in = in_channels
    block, conv_in_block, first_conv = 1, 0, True
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            taps[f"pool{block}"] = len(layers) - 1
            block, conv_in_block = block + 1, 0
            continue
        if isinstance(v, tuple):
            k, pad, c = 1, 0, v[1]
        else:
            k, pad, c = 3, 1, v
        c_out = scaled(c, width_divisor)
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=k, padding=pad))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        conv_in_block += 1
        taps[f"relu{block}_{conv_in_block}"] = len(layers) - 1
        if lrn and first_conv:
            layers.append(nn.LocalResponseNorm(**LRN))
        first_conv = False
        c_in = c_out
    return nn.Sequential(*layers), taps, c_in


class VGG(nn.Module):
    """torchvision-compatible VGG with options: num_classes, in_channels, width_divisor, head, dropout."""

    def __init__(self, arch: str, num_classes: int = 1000, in_channels: int = 3, width_divisor: int = 1,
                 head: str = "paper", dropout: float = 0.5) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; one of {sorted(ARCHS)}")
        cfg_name, bn = ARCHS[arch]
        self.arch, self.head = arch, head
        self.features, self.feature_taps, c = make_features(
            CONFIGS[cfg_name], bn, cfg_name == "A-LRN", in_channels, width_divisor)
        self.classifier_taps: Dict[str, int] = {}
        if head == "paper":
            hidden = 4096 // width_divisor
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(c * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
                nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
                nn.Linear(hidden, num_classes),
            )
            self.classifier_taps = {"fc6": 1, "fc7": 4}
        elif head == "compact":
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.classifier = nn.Linear(c, num_classes)
        else:
            raise ValueError(f"unknown head {head!r}; 'paper' or 'compact'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)

    def tap_names(self) -> List[str]:
        return list(self.feature_taps) + list(self.classifier_taps) + ["logits"]

    def forward_taps(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Runs forward and returns the named taps (cloned: the ReLUs are in place)."""
        out: Dict[str, torch.Tensor] = {}
        handles = []
        for name in names:
            if name == "logits":
                continue
            if name in self.feature_taps:
                module = self.features[self.feature_taps[name]]
            elif name in self.classifier_taps:
                module = self.classifier[self.classifier_taps[name]]
            else:
                raise KeyError(f"{self.arch} has no tap {name!r}; taps: {self.tap_names()}")

            def hook(_m, _inp, output, name=name):
                out[name] = output.detach().clone()

            handles.append(module.register_forward_hook(hook))
        try:
            logits = self.forward(x)
        finally:
            for h in handles:
                h.remove()
        if "logits" in names:
            out["logits"] = logits.detach().clone()
        return {name: out[name] for name in names}


def init_for_fixtures(model: nn.Module, seed: int) -> None:
    """Random but non-degenerate weights: kaiming (fan_out) convs, kaiming (fan_in) linears, random BN affine and stats."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.Linear):
                # He-scaled, not the paper's N(0, 0.01): at these small widths N(0, 0.01) would make the logits
                # almost equal to the last bias, independent of the input.
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.in_features) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.01)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_against_torchvision(verbose: bool = True) -> None:
    """Asserts keys, shapes and outputs equal torchvision's, and the parameter counts of DESIGN.md."""
    import torchvision

    for arch in ARCHS:
        ours = VGG(arch)
        n = count_params(ours)
        assert n == PARAM_COUNTS[arch], f"{arch}: {n} parameters, DESIGN.md says {PARAM_COUNTS[arch]}"
        if arch in TORCHVISION_ARCHS:
            tv = getattr(torchvision.models, arch)(weights=None)
            a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
            b = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
            assert list(a) == list(b), f"{arch}: keys differ from torchvision's"
            assert a == b, f"{arch}: shapes differ from torchvision's"
            assert count_params(tv) == n
            # Same forward: torchvision's weights in our module give torchvision's outputs (eval, 32x32).
            ours.load_state_dict(tv.state_dict())
            ours.eval(), tv.eval()
            x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                assert torch.equal(ours(x), tv(x)), f"{arch}: outputs differ from torchvision's"
        if verbose:
            print(f"{arch:14s} {n:>13,d} parameters" + (" (= torchvision)" if arch in TORCHVISION_ARCHS else ""))
    # Structure checks the paper/DESIGN.md imply.
    lrn = VGG("vgg11_lrn")
    assert isinstance(lrn.features[2], nn.LocalResponseNorm) and isinstance(lrn.features[3], nn.MaxPool2d)
    assert lrn.feature_taps["relu1_1"] == 1 and lrn.feature_taps["pool1"] == 3
    c = VGG("vgg16_1x1")
    assert c.features[14].kernel_size == (1, 1) and c.feature_taps["relu3_3"] == 15


def check_lrn_semantics() -> float:
    """PyTorch's LocalResponseNorm: b = a / (k + alpha/size * sum_{window} a^2)^beta (alpha divided by size, as ONNX)."""
    torch.manual_seed(0)
    a = torch.randn(2, 7, 5, 5) * 3
    got = nn.LocalResponseNorm(**LRN)(a)
    size, alpha, beta, k = LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"]
    sq = torch.nn.functional.pad(a * a, (0, 0, 0, 0, size // 2, (size - 1) // 2))  # zero-pad channels
    s = sum(sq[:, i:i + a.shape[1]] for i in range(size))
    want = a / (k + alpha / size * s) ** beta
    not_divided = a / (k + alpha * s) ** beta
    err = ((got - want).abs().max() / want.abs().max()).item()
    err_alt = ((got - not_divided).abs().max() / want.abs().max()).item()
    assert err < 1e-6 < err_alt, (err, err_alt)
    return err


if __name__ == "__main__":
    check_against_torchvision()
    e = check_lrn_semantics()
    print(f"LRN: PyTorch matches a / (k + alpha/size * sum a^2)^beta (max rel err {e:.1e})")
    print("ok")
