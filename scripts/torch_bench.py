"""PyTorch side of the benchmarks in bench/: torchvision's VGGs run eagerly, exported to ONNX, saved as .pth.

Benchmarks only, never a runtime dependency. Run with Debian's interpreter (/usr/bin/python3, torch 1.13.1).

    export       --arch vgg16 --out /tmp/vgg16.onnx --input-size 224 [--batch-dynamic]
    eager        --arch vgg16 --batch 8 --input-size 224 --iterations K [--warmup W] --json
    first        --arch vgg16 --weights FILE.pth --input x.npy [--out y.npy]
    save-weights --arch vgg16 --out FILE.pth [--seed S]
    make-input   --out x.npy --batch 1 --input-size 224 [--seed S]
    blas-info    (which BLAS torch really calls, and a GEMM rate)

Every command prints one JSON line on stdout, so bench/run.ts can parse it.
"""

from __future__ import annotations

import time

# Taken before the heavy imports: `first` measures from process start, and importing torch is part of the cost a
# user pays for a first result.
_T_SCRIPT = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

TORCHVISION_ARCHS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


def process_age_ms() -> float:
    """Milliseconds since the kernel started this process (10 ms resolution: /proc's start time is in ticks)."""
    with open("/proc/self/stat") as f:
        stat = f.read()
    # The command name may contain spaces and parentheses; the fields after the last ')' are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    start_ticks = int(fields[19])  # field 22 of proc(5), counted from field 3
    start_s = start_ticks / os.sysconf("SC_CLK_TCK")
    # /proc's start time counts from boot, as CLOCK_BOOTTIME does.
    return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_s) * 1000.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    # Linear goes to OpenBLAS, which keeps its own pool; pin it too so both contenders use the same cores.
    try:
        import ctypes

        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(n)
    except OSError:
        pass


def make_model(arch: str, seed: int = 0, init: bool = True):
    import torch
    import torchvision

    if arch not in TORCHVISION_ARCHS:
        sys.exit(f"torch_bench: torchvision has no '{arch}' (known: {', '.join(TORCHVISION_ARCHS)})")
    torch.manual_seed(seed)
    ctor = getattr(torchvision.models, arch)
    if init:
        return ctor(weights=None).eval()
    # Loading a state_dict overwrites every parameter, so torchvision's init (about a second of random numbers for
    # VGG16) is wasted work: turn the init functions into no-ops while the modules are built.
    names = ["kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "constant_", "zeros_", "ones_"]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda t, *args, **kw: t)
        return ctor(weights=None).eval()
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def cmd_export(a: argparse.Namespace) -> None:
    import torch

    t0 = time.perf_counter()
    model = make_model(a.arch, a.seed)
    x = torch.randn(1 if a.batch_dynamic else a.batch, 3, a.input_size, a.input_size)
    dyn = {"input": {0: "N"}, "logits": {0: "N"}} if a.batch_dynamic else None
    last_err = None
    # torch 1.13 speaks opset 17; older builds fall back to the highest they know.
    for opset in (17, 16, 15, 14, 13):
        try:
            with torch.no_grad():
                torch.onnx.export(
                    model, x, a.out, input_names=["input"], output_names=["logits"], dynamic_axes=dyn,
                    opset_version=opset, do_constant_folding=True, export_params=True,
                )
            emit({"out": a.out, "opset": opset, "ms": (time.perf_counter() - t0) * 1000.0,
                  "bytes": os.path.getsize(a.out), "torch": torch.__version__})
            return
        except Exception as err:  # noqa: BLE001 - try the next opset, report the last failure
            last_err = err
    sys.exit(f"torch_bench export failed: {last_err}")


def cmd_eager(a: argparse.Namespace) -> None:
    import torch

    set_threads(a.threads)
    t0 = time.perf_counter()
    model = make_model(a.arch, a.seed)
    load_ms = (time.perf_counter() - t0) * 1000.0
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, 3, a.input_size, a.input_size, generator=g)
    times = []
    with torch.no_grad():
        for _ in range(a.warmup):
            model(x)
        for _ in range(a.iterations):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1000.0)
    ms = statistics.median(times)
    emit({
        "imagesPerSecond": a.batch * 1000.0 / ms,
        "msPerBatch": ms,
        "peakRssMB": peak_rss_mb(),
        "loadMs": load_ms,
        "timesMs": times,
        "threads": torch.get_num_threads(),
    })


def cmd_first(a: argparse.Namespace) -> None:
    import numpy as np

    t_import0 = time.perf_counter()
    import torch
    import torchvision  # noqa: F401 - part of the first-result cost

    t_import = time.perf_counter()
    set_threads(a.threads)
    model = make_model(a.arch, init=not a.skip_init)
    t_build = time.perf_counter()
    sd = torch.load(a.weights, map_location="cpu")
    model.load_state_dict(sd)
    del sd
    t_load = time.perf_counter()
    x = torch.from_numpy(np.load(a.input).astype(np.float32, copy=False))
    with torch.no_grad():
        y = model(x)
    t_run = time.perf_counter()
    if a.out:
        np.save(a.out, y.numpy())
    emit({
        "ms": process_age_ms(),
        "importMs": (t_import - t_import0) * 1000.0,
        "buildMs": (t_build - t_import) * 1000.0,
        "loadWeightsMs": (t_load - t_build) * 1000.0,
        "runMs": (t_run - t_load) * 1000.0,
        "sinceScriptMs": (time.perf_counter() - _T_SCRIPT) * 1000.0,
        "peakRssMB": peak_rss_mb(),
        "skipInit": bool(a.skip_init),
    })


def cmd_save_weights(a: argparse.Namespace) -> None:
    import torch

    model = make_model(a.arch, a.seed)
    torch.save(model.state_dict(), a.out)
    n = sum(p.numel() for p in model.parameters())
    emit({"out": a.out, "params": n, "bytes": os.path.getsize(a.out)})


def cmd_make_input(a: argparse.Namespace) -> None:
    import numpy as np

    x = np.random.default_rng(a.seed).standard_normal((a.batch, 3, a.input_size, a.input_size), dtype=np.float32)
    np.save(a.out, x)
    emit({"out": a.out, "shape": list(x.shape)})


def cmd_blas_info(a: argparse.Namespace) -> None:
    import re

    import torch

    set_threads(a.threads)
    n = 2048
    x, y = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        x @ y
    t = time.perf_counter()
    reps = 5
    for _ in range(reps):
        x @ y
    gemm = 2 * n**3 * reps / (time.perf_counter() - t) / 1e9
    w, v = torch.randn(4096, 25088), torch.randn(8, 25088)
    torch.nn.functional.linear(v, w)
    t = time.perf_counter()
    for _ in range(reps):
        torch.nn.functional.linear(v, w)
    fc6_ms = (time.perf_counter() - t) * 1000.0 / reps
    with open("/proc/self/maps") as f:
        libs = sorted(set(re.findall(r"/\S*(?:blas|lapack|mkl|dnnl)\S*", f.read())))
    config = None
    try:
        import ctypes

        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        config = lib.openblas_get_config().decode()
    except OSError:
        pass
    emit({"torch": torch.__version__, "blasLibraries": libs, "openblasConfig": config,
          "gemm2048GFlops": gemm, "fc6Batch8Ms": fc6_ms, "threads": torch.get_num_threads()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, weights=False):
        sp.add_argument("--arch", default="vgg16")
        sp.add_argument("--input-size", type=int, default=224)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=2)

    sp = sub.add_parser("export")
    common(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--batch-dynamic", action="store_true")
    sp.set_defaults(fn=cmd_export)

    sp = sub.add_parser("eager")
    common(sp)
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--iterations", type=int, default=10)
    sp.add_argument("--warmup", type=int, default=1)
    sp.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    sp.set_defaults(fn=cmd_eager)

    sp = sub.add_parser("first")
    common(sp)
    sp.add_argument("--weights", required=True)
    sp.add_argument("--input", required=True)
    sp.add_argument("--out")
    sp.add_argument("--skip-init", action="store_true",
                    help="build the model without torchvision's random init (it is overwritten by the weights)")
    sp.set_defaults(fn=cmd_first)

    sp = sub.add_parser("save-weights")
    common(sp)
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_save_weights)

    sp = sub.add_parser("make-input")
    common(sp)
    sp.add_argument("--out", required=True)
    sp.add_argument("--batch", type=int, default=1)
    sp.set_defaults(fn=cmd_make_input)

    sp = sub.add_parser("blas-info")
    common(sp)
    sp.set_defaults(fn=cmd_blas_info)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
