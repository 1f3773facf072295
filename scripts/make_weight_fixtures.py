#!/usr/bin/python3
"""Writes small real PyTorch / NumPy files for the weight-reader tests into test/fixtures/weights/.

Run with Debian's torch (python3-torch 1.13): /usr/bin/python3 scripts/make_weight_fixtures.py
Every file stays far below 50 KB. expected.json records, per file and tensor, the dtype, shape and values as torch
sees them (float16 as raw uint16 bits, bool as 0/1, bfloat16 as the float32 it widens to exactly), so the tests
compare against torch itself rather than against our own reader.
"""
import collections
import json
import os
import struct
import zipfile

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "weights")


def small_state_dict():
    """A VGG-like slice (conv, BN, linear) plus the awkward cases a reader must get right."""
    torch.manual_seed(1409)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 2 * 2, 5),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model[1].num_batches_tracked.fill_(37)
    sd = model.state_dict()  # an OrderedDict carrying _metadata, as torchvision's files do
    base = torch.arange(60, dtype=torch.float32).reshape(5, 12) / 7
    # Views into one shared storage: transposed and strided, offset, and the whole base as well.
    sd["extra.view_t"] = base[1:4, 2:10:3].t()
    sd["extra.view_row"] = base[3]
    sd["extra.base"] = base
    sd["extra.half"] = (torch.randn(2, 3) * 10).half()
    sd["extra.bf16"] = torch.randn(4).bfloat16()
    sd["extra.double"] = torch.randn(3, dtype=torch.float64)
    sd["extra.int32"] = torch.tensor([-7, 0, 2**31 - 1], dtype=torch.int32)
    sd["extra.int8"] = torch.tensor([-128, 5, 127], dtype=torch.int8)
    sd["extra.uint8"] = torch.tensor([[0, 200], [255, 1]], dtype=torch.uint8)
    sd["extra.bool"] = torch.tensor([True, False, True])
    sd["extra.big_int64"] = torch.tensor([-(2**40), 3], dtype=torch.int64)
    sd["extra.empty"] = torch.zeros(0, 3)
    return sd


def describe(t):
    t = t.contiguous()
    if t.dtype == torch.float16:
        return {"dtype": "float16", "shape": list(t.shape), "bits": t.view(torch.int16).flatten().numpy().astype(np.uint16).tolist()}
    if t.dtype == torch.bfloat16:
        return {"dtype": "float32", "shape": list(t.shape), "values": t.float().flatten().tolist()}
    if t.dtype == torch.bool:
        return {"dtype": "bool", "shape": list(t.shape), "values": t.flatten().int().tolist()}
    name = str(t.dtype).replace("torch.", "")
    if t.dtype == torch.int64:
        # As strings: JSON numbers would lose int64 precision in JavaScript.
        return {"dtype": name, "shape": list(t.shape), "values": [str(v) for v in t.flatten().tolist()]}
    return {"dtype": name, "shape": list(t.shape), "values": t.flatten().tolist()}


def repack(src, dst, compression):
    """Same archive, entries re-stored with another compression method (torch itself only writes stored)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))


def write_safetensors(path, tensors, metadata):
    """The layout the reference implementation writes: compact JSON, widest dtype first, space padding."""
    names = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    codes = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.bfloat16: "BF16"}
    header = {"__metadata__": metadata}
    blobs, pos = [], 0
    for k in names:
        t = tensors[k].contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    sd = small_state_dict()
    state = {k: describe(v) for k, v in sd.items()}

    torch.save(sd, os.path.join(OUT, "small_zip.pth"))
    expected["small_zip.pth"] = state
    torch.save(sd, os.path.join(OUT, "small_legacy.pth"), _use_new_zipfile_serialization=False)
    expected["small_legacy.pth"] = state
    repack(os.path.join(OUT, "small_zip.pth"), os.path.join(OUT, "small_deflate.pth"), zipfile.ZIP_DEFLATED)
    expected["small_deflate.pth"] = state

    # A training checkpoint: the reader must pick 'state_dict' and never touch the optimizer's tensors.
    model_sd = collections.OrderedDict((k, v) for k, v in sd.items() if not k.startswith("extra."))
    ckpt = {
        "epoch": 12,
        "arch": "vgg11_bn",
        "best_acc1": torch.tensor(71.5),
        "state_dict": model_sd,
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(4, 3, 3, 3)}}, "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0]}]},
    }
    torch.save(ckpt, os.path.join(OUT, "checkpoint.pth"))
    expected["checkpoint.pth"] = {k: describe(v) for k, v in model_sd.items()}

    st = {"features.0.weight": sd["0.weight"], "features.0.bias": sd["0.bias"], "half": sd["extra.half"], "bf16": sd["extra.bf16"], "nbt": sd["1.num_batches_tracked"]}
    write_safetensors(os.path.join(OUT, "reference.safetensors"), st, {"format": "pt", "source": "make_weight_fixtures.py"})
    expected["reference.safetensors"] = {k: describe(v) for k, v in st.items()}

    # .npy files as numpy writes them, one per supported dtype and header version.
    rng = np.random.default_rng(1556)
    arrays = {
        "f4.npy": (rng.standard_normal((2, 3, 4)).astype("<f4"), None),
        "f8.npy": (rng.standard_normal(5), None),
        "f2.npy": (rng.standard_normal((3, 2)).astype("<f2"), None),
        "i8.npy": (np.array([[-(2**60), 1], [2, 3]], dtype="<i8"), None),
        "i4.npy": (np.array([-5, 7, 2**31 - 1], dtype="<i4"), None),
        "i1.npy": (np.array([-128, 0, 127], dtype="i1"), None),
        "u1.npy": (np.arange(0, 256, 51, dtype="u1").reshape(2, 3), None),
        "b1.npy": (np.array([True, False, False, True]), None),
        "scalar.npy": (np.array(2.5, dtype="<f4"), None),
        "empty.npy": (np.zeros((0, 3), dtype="<f4"), None),
        "v2.npy": (rng.standard_normal((2, 2)).astype("<f4"), (2, 0)),
        "v3.npy": (np.arange(6, dtype="<i4").reshape(3, 2), (3, 0)),
        "fortran.npy": (np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)), None),
    }
    npy = {}
    for name, (a, version) in arrays.items():
        with open(os.path.join(OUT, name), "wb") as f:
            np.lib.format.write_array(f, a, version=version)
        if name == "fortran.npy":
            continue  # refused by the reader; only the file is needed
        kind = {"f": "float", "i": "int", "u": "uint", "b": "bool"}[a.dtype.kind]
        dtype = "bool" if kind == "bool" else f"{kind}{a.dtype.itemsize * 8}"
        flat = a.reshape(-1)
        if a.dtype == np.float16:
            entry = {"bits": flat.view("<u2").tolist()}
        elif a.dtype.kind == "b":
            entry = {"values": flat.astype(int).tolist()}
        elif a.dtype == np.int64:
            entry = {"values": [str(v) for v in flat.tolist()]}
        else:
            entry = {"values": flat.tolist()}
        npy[name] = {"dtype": dtype, "shape": list(a.shape), **entry}
    expected["npy"] = npy

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        assert size < 50_000, f"{name} is {size} bytes"
        print(f"{size:7d}  {name}")


if __name__ == "__main__":
    main()
