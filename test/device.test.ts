/**
 * `--device cpu|webgpu|auto` and `createModel({ device })`: the flag's errors and fallbacks on every command, the
 * WebGPU forms of the training graph (checked on the CPU, where they must compute what the CPU forms do), and, where
 * ORT's WebGPU provider finds an adapter, the GPU against the CPU: logits of the 12 archs within 1e-3 relative, one
 * training step within 1e-3 of each update's scale. Without an adapter (CI: no Vulkan driver, or Debian's lavapipe,
 * which Dawn refuses) those skip with the one line the CLI prints. VGG_TEST_DEVICE=webgpu (scripts/device-check.sh)
 * makes a missing adapter a failure instead, and VGG_DEVICE_REPORT=FILE writes the figures there as JSON.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { deflateSync } from "node:zlib";
import { createModel } from "../src/api/create-model.js";
import { VggError } from "../src/errors.js";
import { buildTrainStep, stepFeeds, type TrainStepOptions } from "../src/graph/train-step.js";
import { writeNpy } from "../src/io/npy.js";
import { encodeModel } from "../src/onnx/encode.js";
import { Predictor } from "../src/predict/predictor.js";
import { adapterReason, type Device, noAdapterMessage, resolveDevice, webGpuStatus } from "../src/runtime/device.js";
import { createSession } from "../src/runtime/ort.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { ARCHS } from "../src/zoo/configs.js";
import { buildModel, type ModelOptions, type VggModel } from "../src/zoo/model.js";
import { tmp, toyData, vggAsync } from "./helpers.js";
import { prng, relMaxErr } from "./train-step-helpers.js";

const REQUIRE = process.env.VGG_TEST_DEVICE === "webgpu";
const report: Record<string, unknown> = {};

/** The WebGPU status, asserted present when the run requires it; tests that need the GPU skip with its reason. */
async function gpu(): Promise<{ ok: boolean; why: string }> {
  const s = await webGpuStatus();
  if (s.available) return { ok: true, why: "" };
  assert.ok(!REQUIRE, `VGG_TEST_DEVICE=webgpu: ${noAdapterMessage(s.reason)}`);
  return { ok: false, why: noAdapterMessage(s.reason) };
}

function noteReport(key: string, value: unknown): void {
  report[key] = value;
  if (process.env.VGG_DEVICE_REPORT) writeFileSync(process.env.VGG_DEVICE_REPORT, `${JSON.stringify(report, null, 1)}\n`);
}

function batch(N: number, C: number, S: number, classes: number, seed: number): { x: Tensor; y: Tensor } {
  const rnd = prng(seed);
  return {
    x: { dtype: "float32", shape: [N, C, S, S], data: Float32Array.from({ length: N * C * S * S }, () => rnd() * 2 - 1) },
    y: { dtype: "int64", shape: [N], data: BigInt64Array.from({ length: N }, (_, n) => BigInt(n % classes)) },
  };
}

/** A 24x24 RGB PNG written without sharp (zlib's deflate and a CRC table), for `vgg predict`. */
function png(path: string): void {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const v of b) c = crcTable[(c ^ v) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const S = 24;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(S, 0);
  ihdr.writeUInt32BE(S, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.alloc(S * (1 + 3 * S));
  for (let r = 0; r < S; r++) for (let q = 0; q < 3 * S; q++) rows[r * (1 + 3 * S) + 1 + q] = (r * 7 + q * 3) & 0xff;
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  writeFileSync(path, Buffer.concat([sig, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(rows)), chunk("IEND", Buffer.alloc(0))]));
}

// --- the flag -----------------------------------------------------------------------------------------------------

const dir = tmp("vgg-device-");
const X = join(dir, "x.npy");
writeNpy(X, { dtype: "float32", shape: [2, 3, 32, 32], data: batch(2, 3, 32, 10, 1).x.data });
const TINY = ["--arch", "vgg11", "--width-divisor", "16", "--head", "compact", "--num-classes", "10"];

test("--device takes cpu, webgpu or auto on every command that runs a model: anything else is one line naming them", async () => {
  const runs: string[][] = [
    ["infer", ...TINY, "--input", X, "--out", join(dir, "no.npy")],
    ["predict", join(dir, "none.png"), ...TINY],
    ["eval", ...TINY, "--weights", join(dir, "none.safetensors"), "--data", "fashion-mnist"],
    ["train", ...TINY, "--data", "fashion-mnist", "--out", join(dir, "never")],
    ["bench", "infer", ...TINY, "--input-size", "32"],
    ["bench", "train", ...TINY],
    ["serve", "--model", `m=${join(dir, "none.onnx")}`],
  ];
  for (const args of runs) {
    const r = await vggAsync([...args, "--device", "gpu"]);
    assert.equal(r.status, 1, `${args.slice(0, 2).join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /--device <name>' argument 'gpu' is invalid\. Allowed choices are cpu, webgpu, auto\./, args[0]);
  }
  await assert.rejects(resolveDevice("gpu" as "cpu"), (e: Error) => e instanceof VggError && /known: cpu, webgpu, auto/.test(e.message));
});

test("--device webgpu without an adapter is one line and exit 1; with one, the command runs on the GPU", async () => {
  const { ok } = await gpu();
  const out = join(dir, "webgpu.npy");
  const r = await vggAsync(["infer", ...TINY, "--input", X, "--out", out, "--device", "webgpu"]);
  if (ok) {
    assert.equal(r.status, 0, r.stderr);
    return;
  }
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stdout, "");
  // One line: Dawn's own warnings (printed by the probe's process) do not reach the terminal.
  assert.match(r.stderr, /^vgg: no WebGPU adapter: .+ \(Vulkan driver\?\)\n$/);
  const b = await vggAsync(["bench", "train", ...TINY, "--batch", "4", "--steps", "1", "--warmup", "1", "--device", "webgpu"]);
  assert.equal(b.status, 1, b.stderr);
  assert.match(b.stderr, /^vgg: no WebGPU adapter: .+ \(Vulkan driver\?\)\n$/);
  await assert.rejects(resolveDevice("webgpu"), /^VggError: no WebGPU adapter: .+ \(Vulkan driver\?\)$/);
  await assert.rejects(
    Predictor.create("vgg11", { widthDivisor: 16, head: "compact", numClasses: 10, inputSize: 32, device: "webgpu" }),
    /no WebGPU adapter/,
  );
});

test("--device auto runs on WebGPU when there is an adapter, else on the CPU with one note: infer, predict, bench, train, eval", async () => {
  const { ok } = await gpu();
  const note = /^vgg: note: no WebGPU adapter: .+ \(Vulkan driver\?\); device auto: running on the CPU$/m;
  const checkNote = (r: { status: number | null; stderr: string }, what: string) => {
    assert.equal(r.status, 0, `${what}: ${r.stderr}`);
    if (ok) assert.doesNotMatch(r.stderr, /no WebGPU adapter/, what);
    else assert.equal(r.stderr.match(new RegExp(note.source, "gm"))?.length, 1, `${what}: ${r.stderr}`);
  };
  const want: Device = ok ? "webgpu" : "cpu";

  checkNote(await vggAsync(["infer", ...TINY, "--input", X, "--out", join(dir, "auto.npy"), "--device", "auto"]), "infer");
  const bi = await vggAsync(["bench", "infer", ...TINY, "--input-size", "32", "--iterations", "2", "--json", "--device", "auto"]);
  checkNote(bi, "bench infer");
  assert.equal(JSON.parse(bi.stdout).device, want);
  const bt = await vggAsync(["bench", "train", ...TINY, "--batch", "4", "--steps", "1", "--warmup", "1", "--json", "--device", "auto"]);
  checkNote(bt, "bench train");
  assert.equal(JSON.parse(bt.stdout).device, want);

  // predict decodes with sharp, which a machine given only what the CLI needs (scripts/device-check.sh) may lack.
  const haveSharp = await import("sharp").then(
    () => true,
    () => false,
  );
  if (haveSharp) {
    const img = join(dir, "a.png");
    png(img);
    const p = await vggAsync(["predict", img, ...TINY, "--input-size", "32", "--top", "2", "--device", "auto"]);
    checkNote(p, "predict");
    assert.match(p.stdout, /a\.png\n/);
  }

  const data = `npy:${toyData(dir, 40, 1)};${toyData(dir, 16, 2)}`;
  const run = join(dir, "run");
  const common = ["--data", data, "--batch-size", "8", "--val", "8", "--no-progress", "--workers", "0"];
  const t = await vggAsync([
    "train",
    "--arch",
    "vgg11_bn",
    "--head",
    "compact",
    "--width-divisor",
    "16",
    ...common,
    "--out",
    run,
    "--epochs",
    "1",
    "--device",
    "auto",
  ]);
  checkNote(t, "train");
  assert.match(t.stdout, /test top-1 accuracy/);
  const e = await vggAsync(["eval", "--weights", join(run, "best.safetensors"), "--data", data, "--json", "--device", "auto"]);
  checkNote(e, "eval");
  assert.equal(JSON.parse(e.stdout).n, 16);
});

test("createModel({ device }): auto resolves once, says why on log, and VggNet.device tells", async () => {
  const { ok } = await gpu();
  const lines: string[] = [];
  const net = await createModel("vgg11", {
    widthDivisor: 16,
    head: "compact",
    numClasses: 10,
    inputSize: 32,
    device: "auto",
    log: (l) => lines.push(l),
  });
  try {
    assert.equal(net.device, ok ? "webgpu" : "cpu");
    assert.equal(lines.filter((l) => /no WebGPU adapter/.test(l)).length, ok ? 0 : 1, lines.join("\n"));
    const top = await net.classify(batch(1, 3, 32, 10, 3).x, { top: 3 });
    assert.equal(top[0].length, 3);
  } finally {
    await net.release();
  }
  const cpu = await createModel("vgg11", { widthDivisor: 16, head: "compact", numClasses: 10, inputSize: 32 });
  assert.equal(cpu.device, "cpu");
  await cpu.release();
});

test("the no-adapter line is cut from ORT's message and Dawn's warnings", () => {
  const ort =
    "/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters\n";
  const dawn =
    "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory\n    at operator() (/build/Release/_deps/dawn-src/src/dawn/native/vulkan/BackendVk.cpp:368)\n";
  assert.equal(
    noAdapterMessage(adapterReason(ort, dawn)),
    "no WebGPU adapter: No supported adapters; Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory (Vulkan driver?)",
  );
  assert.equal(adapterReason("the adapter probe timed out", ""), "the adapter probe timed out");
  // Control characters in what the driver says cannot break the line.
  const r = adapterReason("a\u0007b", "Warning: c\u001bd\n");
  assert.ok(
    [...r].every((ch) => ch.charCodeAt(0) >= 0x20),
    JSON.stringify(r),
  );
});

// --- the WebGPU forms of the training graph --------------------------------------------------------------------

/** One step from the same state: the state's new values, loss and the update's scale per entry. */
async function oneStep(m: VggModel, opts: TrainStepOptions, device: Device, sd: StateDict, b: { x: Tensor; y: Tensor }) {
  const step = buildTrainStep(m, opts);
  const s = await createSession(encodeModel(step.spec), { device, memPattern: false, threads: 2 });
  try {
    const out = await s.run(stepFeeds(step, sd, undefined, { ...b, lr: 0.05, seed: 3 }));
    return { out, step };
  } finally {
    await s.release();
  }
}

/**
 * Per state entry, max |b - a| of the new values against max |a - old| (the reference update's scale): the error
 * relative to the step's own size, since the weights themselves are far larger than one update. Zero-size updates
 * (a conv bias before BN) must match to 1e-7.
 */
async function compareSteps(m: VggModel, o: TrainStepOptions, ref: Device, other: Device, otherOpts: TrainStepOptions) {
  const sd = initWeights(m, "torchvision", 5);
  const b = batch(o.batchSize, m.inputShape[0], m.inputShape[1], m.options.numClasses, 7);
  const a = await oneStep(m, o, ref, sd, b);
  const c = await oneStep(m, otherOpts, other, sd, b);
  let worst = { key: "", err: 0 };
  for (const e of a.step.state) {
    const na = a.out[e.output];
    const nc = c.out[e.output];
    if (e.dtype === "int64") {
      assert.deepEqual(nc.data, na.data, e.output);
      continue;
    }
    const old = e.kind === "momentum" ? new Float32Array(na.data.length) : (sd.get(e.input)?.data as Float32Array);
    const upd = Float32Array.from(na.data as Float32Array, (v, k) => v - old[k]);
    const updC = Float32Array.from(nc.data as Float32Array, (v, k) => v - old[k]);
    const { diff, scale } = relMaxErr(updC, upd);
    const err = scale === 0 ? (diff <= 1e-7 ? 0 : Number.POSITIVE_INFINITY) : diff / scale;
    if (err > worst.err) worst = { key: e.output, err };
  }
  const loss = relMaxErr(c.out.loss.data as Float32Array, a.out.loss.data as Float32Array).err;
  return { worst, loss };
}

const FORMS: [string, ModelOptions, number][] = [
  ["vgg11_bn", { head: "compact", numClasses: 10, widthDivisor: 8, inputSize: 32 }, 8],
  ["vgg11", { head: "paper", numClasses: 10, widthDivisor: 16, inputSize: 32, dropout: 0.5 }, 4],
  ["vgg16_1x1_bn", { head: "compact", numClasses: 10, widthDivisor: 16, inputSize: 64 }, 4],
];

test("the WebGPU forms (composed BN, float pool masks, ORT's Conv) compute on the CPU what the CPU graph does", async () => {
  for (const [arch, mo, N] of FORMS) {
    const m = buildModel(arch, mo);
    // The CPU graph does not depend on the option.
    assert.deepEqual(
      encodeModel(buildTrainStep(m, { batchSize: N, device: "cpu" }).spec),
      encodeModel(buildTrainStep(m, { batchSize: N }).spec),
    );
    const gpuGraph = buildTrainStep(m, { batchSize: N, device: "webgpu" });
    const ops = new Set(gpuGraph.spec.nodes.map((n) => n.opType));
    for (const op of ["Xor", "And"]) assert.ok(!ops.has(op), `${arch}: ${op} in the WebGPU graph`);
    // The provider has no Slice of bools either: on the GPU the first graphs sliced the pools' masks on the CPU.
    const producer = new Map(gpuGraph.spec.nodes.flatMap((n) => n.outputs.map((o) => [o, n.opType] as const)));
    const bools = new Set(["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor"]);
    const boolSlices = gpuGraph.spec.nodes.filter((n) => n.opType === "Slice" && bools.has(producer.get(n.inputs[0]) ?? ""));
    assert.deepEqual(
      boolSlices.map((n) => n.name),
      [],
      `${arch}: Slices of bools in the WebGPU graph`,
    );
    assert.ok(
      gpuGraph.spec.nodes.every((n) => n.opType !== "BatchNormalization" || !n.attrs?.training_mode),
      `${arch}: BN in training mode in the WebGPU graph`,
    );
    const { worst, loss } = await compareSteps(m, { batchSize: N }, "cpu", "cpu", { batchSize: N, device: "webgpu" });
    noteReport(`forms-on-cpu ${arch}`, { worstUpdateErr: worst.err, worstKey: worst.key, lossRelErr: loss });
    // fp32 rounding of two summation orders is ~1e-4 of the smallest updates (BN weights); a wrong form is off by O(1).
    assert.ok(worst.err < 1e-3, `${arch}: ${worst.key} off by ${worst.err} of its update`);
    assert.ok(loss < 1e-5, `${arch}: loss off by ${loss}`);
  }
});

// --- the GPU against the CPU (skipped without an adapter) ------------------------------------------------------

test("WebGPU logits of the 12 archs within 1e-3 relative of the CPU's", async (t) => {
  const { ok, why } = await gpu();
  if (!ok) return t.skip(why);
  const figures: Record<string, number> = {};
  for (const a of ARCHS) {
    const m = buildModel(a.name, { widthDivisor: 4, numClasses: 100, inputSize: 64 });
    const w = initWeights(m, "torchvision", 11);
    const { x } = batch(4, 3, 64, 100, 13);
    const out: Float32Array[] = [];
    for (const device of ["cpu", "webgpu"] as const) {
      const p = await Predictor.fromWeights(m, w, { device });
      try {
        assert.equal(p.device, device);
        out.push((await p.run(x)).logits.data as Float32Array);
      } finally {
        await p.release();
      }
    }
    figures[a.name] = relMaxErr(out[1], out[0]).err;
  }
  noteReport("logits relative error (webgpu vs cpu)", figures);
  for (const [arch, err] of Object.entries(figures)) assert.ok(err <= 1e-3, `${arch}: ${err}`);
});

test("one WebGPU training step within 1e-3 of each update's scale of the CPU's", async (t) => {
  const { ok, why } = await gpu();
  if (!ok) return t.skip(why);
  const figures: Record<string, unknown> = {};
  for (const [arch, mo, N] of FORMS) {
    const m = buildModel(arch, mo);
    const { worst, loss } = await compareSteps(m, { batchSize: N }, "cpu", "webgpu", { batchSize: N, device: "webgpu" });
    figures[arch] = { worstUpdateErr: worst.err, worstKey: worst.key, lossRelErr: loss };
    assert.ok(worst.err <= 1e-3, `${arch}: ${worst.key} off by ${worst.err} of its update`);
    assert.ok(loss <= 1e-3, `${arch}: loss off by ${loss}`);
  }
  noteReport("training step (webgpu vs cpu)", figures);
});
