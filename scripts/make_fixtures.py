"""Writes the golden fixtures in test/fixtures/golden/ that the TypeScript tests compare against.

    /usr/bin/python3 scripts/make_fixtures.py [--out test/fixtures/golden] [--skip-check]

For every case: a state_dict (.pth, torch.save, zip or legacy format), an input (.npy, float32 NCHW) and the
expected outputs at a few named taps (.npy, float32), all listed in manifest.json. Seeds are fixed, so re-running
gives identical files. Size limits: every file < 500 KB, the folder < 4 MB (checked at the end).

Cases:
  1. all 12 archs, width divisor 16, compact head, 32x32, batch 2, 3 channels, 10 classes (zip / legacy alternate);
  2. paper head (adaptive 7x7 average pool + 3 FC) for vgg11 and vgg16_bn at 32, 100 and 257 (final maps 1x1, 3x3,
     8x8), one weights file per arch;
  3. vgg11_bn, paper head, 224x224, batch 1;
  4. vgg11_bn, compact head, 1 input channel, 32x32.
The paper-head cases use width divisor 64 and 1 input channel: at divisor 32 the head alone (784x128 fc6) makes the
weights file ~510-530 KB, and a 3-channel float32 input is 602 KB at 224x224 and 793 KB at 257x257 (batch 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import ARCHS, VGG, check_against_torchvision, check_lrn_semantics, init_for_fixtures  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILE = 500_000  # decimal KB/MB: the stricter reading
MAX_TOTAL = 4_000_000


def save_legacy(obj, path: str) -> None:
    """torch.save(obj, path, _use_new_zipfile_serialization=False), but deterministic.

    torch's legacy writer names each storage by its memory address (str(storage._cdata)) and writes the storages in
    the lexicographic order of those names, so two runs give different bytes. This is the same writer (torch 1.13's
    _legacy_save for tensors) with the names "0", "1", ... in order of first appearance; they are still written in
    lexicographic order ("0", "1", "10", "11", ..., "2", ...), so a reader must follow the stored key list, as it
    must for real legacy files.
    """
    import pickle

    from torch import serialization as ser

    keys: Dict[int, str] = {}
    storages: Dict[str, torch.storage.TypedStorage] = {}

    def persistent_id(o):
        if isinstance(o, torch.storage.TypedStorage):
            key = keys.setdefault(o._storage._cdata, str(len(keys)))
            storages.setdefault(key, o)
            return ("storage", getattr(torch, o.pickle_storage_type()), key, ser.location_tag(o), o.size(), None)
        if torch.is_storage(o):
            raise TypeError(f"untyped storage {type(o)} not supported here")
        return None

    sys_info = dict(protocol_version=ser.PROTOCOL_VERSION, little_endian=sys.byteorder == "little",
                    type_sizes=dict(short=ser.SHORT_SIZE, int=ser.INT_SIZE, long=ser.LONG_SIZE))
    with open(path, "wb") as f:
        pickle.dump(ser.MAGIC_NUMBER, f, protocol=2)
        pickle.dump(ser.PROTOCOL_VERSION, f, protocol=2)
        pickle.dump(sys_info, f, protocol=2)
        pickler = pickle.Pickler(f, protocol=2)
        pickler.persistent_id = persistent_id
        pickler.dump(obj)
        ordered = sorted(storages)
        pickle.dump(ordered, f, protocol=2)
        f.flush()
        for key in ordered:
            s = storages[key]
            s._storage._write_file(f, ser._should_read_directly(f), True, torch._utils._element_size(s.dtype))


def last_relu(model: VGG, block: int) -> str:
    return [t for t in model.feature_taps if t.startswith(f"relu{block}_")][-1]


class Writer:
    def __init__(self, out: str) -> None:
        self.out = out
        self.files: List[str] = []
        self.inputs: Dict[tuple, str] = {}

    def npy(self, name: str, a: np.ndarray) -> str:
        assert a.dtype == np.float32
        np.save(os.path.join(self.out, name), np.ascontiguousarray(a), allow_pickle=False)
        self.files.append(name)
        return name

    def pth(self, name: str, model: VGG, fmt: str) -> str:
        path = os.path.join(self.out, name)
        if fmt == "zip":
            torch.save(model.state_dict(), path)
        else:
            save_legacy(model.state_dict(), path)
        # The file must load back to the same tensors.
        loaded = torch.load(path)
        sd = model.state_dict()
        assert list(loaded) == list(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd), name
        self.files.append(name)
        return name

    def input(self, batch: int, channels: int, size: int, seed: int) -> str:
        """One input file per (batch, channels, size): cases of the same shape share it."""
        key = (batch, channels, size)
        if key not in self.inputs:
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, channels, size, size, generator=g, dtype=torch.float32)
            self.inputs[key] = self.npy(f"x_b{batch}_c{channels}_{size}.npy", x.numpy())
        return self.inputs[key]


def make_model(arch: str, opts: dict, seed: int) -> VGG:
    model = VGG(arch, num_classes=opts["numClasses"], in_channels=opts["inChannels"],
                width_divisor=opts["widthDivisor"], head=opts["head"])
    init_for_fixtures(model, seed)
    return model.eval()


def case_entry(w: Writer, name: str, arch: str, opts: dict, model: VGG, weights: str, fmt: str,
               batch: int, size: int, taps: List[str], seed: int) -> dict:
    x_name = w.input(batch, opts["inChannels"], size, 1000 + size * 10 + opts["inChannels"])
    x = torch.from_numpy(np.load(os.path.join(w.out, x_name)))
    with torch.no_grad():
        outs = model.forward_taps(x, taps)
    expected = {}
    shapes = {}
    for tap, t in outs.items():
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
        assert t.abs().max() > 0, f"{name}: tap {tap} is all zeros"
        expected[tap] = w.npy(f"{name}.{tap}.npy", t.numpy())
        shapes[tap] = list(t.shape)
    return {
        "name": name, "arch": arch, "options": opts, "inputSize": size, "batch": batch, "seed": seed,
        "weights": weights, "format": fmt, "input": x_name, "expected": expected, "shapes": shapes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "golden"))
    ap.add_argument("--skip-check", action="store_true", help="skip the torchvision equivalence check (~30 s)")
    args = ap.parse_args()

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if not args.skip_check:
        check_against_torchvision(verbose=False)
        print("torchvision equivalence: keys, shapes and DESIGN.md parameter counts ok for all 12 archs")
    print(f"LRN semantics (alpha/size) ok, max rel err {check_lrn_semantics():.1e}")

    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):  # start clean: stale files would otherwise stay
        if f.endswith((".pth", ".npy")) or f == "manifest.json":
            os.remove(os.path.join(args.out, f))
    w = Writer(args.out)
    cases = []
    n_saved = 0

    def fmt_next() -> str:
        nonlocal n_saved
        n_saved += 1
        return "zip" if n_saved % 2 == 1 else "legacy"

    # 1. every arch, compact head, divisor 16, 32x32, batch 2.
    for i, arch in enumerate(ARCHS):
        seed = 100 + i
        opts = {"numClasses": 10, "inChannels": 3, "widthDivisor": 16, "head": "compact"}
        model = make_model(arch, opts, seed)
        fmt = fmt_next()
        name = f"{arch}_compact_d16"
        weights = w.pth(f"{name}.pth", model, fmt)
        # One intermediate tap per case (sizes): pool1 after the LRN for A-LRN, the last ReLU of block 3 otherwise
        # (for C that is the 1x1 conv's); relu1_1 (before the LRN) once more for vgg11_lrn.
        mid = ["relu1_1", "pool1"] if arch == "vgg11_lrn" else ["pool1"] if "lrn" in arch else [last_relu(model, 3)]
        taps = mid + ["pool5", "logits"]
        cases.append(case_entry(w, name, arch, opts, model, weights, fmt, 2, 32, taps, seed))

    # 2. paper head at 32 / 100 / 257 (final maps 1x1, 3x3, 8x8), one weights file per arch.
    for j, arch in enumerate(["vgg11", "vgg16_bn"]):
        seed = 200 + j
        opts = {"numClasses": 10, "inChannels": 1, "widthDivisor": 64, "head": "paper"}
        model = make_model(arch, opts, seed)
        fmt = fmt_next()
        weights = w.pth(f"{arch}_paper_d64_c1.pth", model, fmt)
        for size, batch in [(32, 2), (100, 2), (257, 1)]:
            taps = [last_relu(model, 4 if size < 257 else 5), "pool5", "fc6", "fc7", "logits"]
            cases.append(case_entry(w, f"{arch}_paper_d64_c1_{size}", arch, opts, model, weights, fmt,
                                    batch, size, taps, seed))

    # 3. ImageNet-sized input.
    arch, seed = "vgg11_bn", 300
    opts = {"numClasses": 10, "inChannels": 1, "widthDivisor": 64, "head": "paper"}
    model = make_model(arch, opts, seed)
    fmt = fmt_next()
    weights = w.pth(f"{arch}_paper_d64_c1_224.pth", model, fmt)
    cases.append(case_entry(w, f"{arch}_paper_d64_c1_224", arch, opts, model, weights, fmt, 1, 224,
                            ["relu5_2", "pool5", "fc6", "fc7", "logits"], seed))

    # 4. one input channel (Fashion-MNIST-like, padded to the minimum size 32).
    arch, seed = "vgg11_bn", 400
    opts = {"numClasses": 10, "inChannels": 1, "widthDivisor": 16, "head": "compact"}
    model = make_model(arch, opts, seed)
    fmt = fmt_next()
    name = f"{arch}_compact_d16_c1"
    weights = w.pth(f"{name}.pth", model, fmt)
    cases.append(case_entry(w, name, arch, opts, model, weights, fmt, 2, 32,
                            ["pool1", "relu3_2", "pool5", "logits"], seed))

    manifest = {
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "generator": "scripts/make_fixtures.py",
        "tolerance": {"relative": 1e-4},
        "cases": cases,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    w.files.append("manifest.json")

    # Size checks over the whole folder.
    total = 0
    too_big = []
    for f in sorted(os.listdir(args.out)):
        size = os.path.getsize(os.path.join(args.out, f))
        total += size
        if size >= MAX_FILE:
            too_big.append((f, size))
    print(f"{len(cases)} cases, {len(w.files)} files written, folder total {total:,d} bytes "
          f"({total / 1024 / 1024:.2f} MiB)")
    largest = sorted(((os.path.getsize(os.path.join(args.out, f)), f) for f in w.files), reverse=True)[:3]
    print("largest: " + ", ".join(f"{f} {s:,d}" for s, f in largest))
    assert not too_big, f"files >= 500 KB: {too_big}"
    assert total < MAX_TOTAL, f"folder is {total} bytes, over 4 MB"


if __name__ == "__main__":
    main()
