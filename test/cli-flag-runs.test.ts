/**
 * Real runs of the binary for the flags no other CLI test ran (see cli-flags.test.ts): each run asserts what the flag
 * changes (the exported graph, the optimizer's buffers, the schedule, the files written), or its one-line error
 * for a bad value. Models are tiny (width /16, 32x32) so the whole file takes well under a minute on two cores.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import { encodeInferenceGraph } from "../src/graph/infer.js";
import { readNpy, writeNpy } from "../src/io/npy.js";
import { readOnnxInfo } from "../src/onnx/decode.js";
import { Xoshiro128 } from "../src/random.js";
import { cpuSaturatesU8S8 } from "../src/runtime/cpu.js";
import { createSession } from "../src/runtime/ort.js";
import { numel, type StateDict, type Tensor } from "../src/tensor.js";
import { saveCheckpoint } from "../src/train/checkpoint.js";
import { initWeights } from "../src/weights/init.js";
import { readSafetensorsFile } from "../src/weights/safetensors.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, BIN, pool, printedUrl, ROOT, type RunResult, relErr, tmp, toyData, vgg, vggAsync } from "./helpers.js";

const dir = tmp("vgg-flag-runs-");
after(() => rmSync(dir, { recursive: true, force: true }));

function ok(r: RunResult, what: string): RunResult {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  return r;
}

function randomImages(n: number, shape: number[], seed: number): Tensor {
  const rng = new Xoshiro128(seed);
  const per = numel(shape);
  return { dtype: "float32", shape: [n, ...shape], data: new Float32Array(n * per).map(() => rng.normal()) };
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal ONNX reader: the graph's nodes and initializers, enough to see what a precision flag did to the file.

interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  ints: Record<string, number>;
}
interface OnnxInit {
  dims: number[];
  /** ONNX TensorProto.DataType: 1 float32, 2 uint8, 3 int8, 6 int32, 10 float16. */
  dtype: number;
  raw: Uint8Array;
}

function* protoFields(b: Uint8Array, start: number, end: number) {
  let p = start;
  const varint = () => {
    let v = 0;
    let m = 1;
    for (;;) {
      const x = b[p++];
      v += (x & 0x7f) * m;
      m *= 128;
      if (x < 0x80) return v;
    }
  };
  while (p < end) {
    const key = varint();
    const num = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) yield { num, value: varint(), pos: 0, len: 0 };
    else if (wire === 1 || wire === 5) {
      const len = wire === 1 ? 8 : 4;
      yield { num, value: 0, pos: p, len };
      p += len;
    } else if (wire === 2) {
      const len = varint();
      yield { num, value: 0, pos: p, len };
      p += len;
    } else throw new Error(`protobuf wire type ${wire} at ${p}`);
  }
}

function readGraph(file: string): { nodes: OnnxNode[]; inits: Map<string, OnnxInit> } {
  const b = new Uint8Array(readFileSync(file));
  const text = (f: { pos: number; len: number }) => new TextDecoder().decode(b.subarray(f.pos, f.pos + f.len));
  const nodes: OnnxNode[] = [];
  const inits = new Map<string, OnnxInit>();
  for (const m of protoFields(b, 0, b.length)) {
    if (m.num !== 7) continue; // ModelProto.graph
    for (const g of protoFields(b, m.pos, m.pos + m.len)) {
      if (g.num === 1) {
        const n: OnnxNode = { op: "", inputs: [], outputs: [], ints: {} };
        for (const f of protoFields(b, g.pos, g.pos + g.len)) {
          if (f.num === 1) n.inputs.push(text(f));
          else if (f.num === 2) n.outputs.push(text(f));
          else if (f.num === 4) n.op = text(f);
          else if (f.num === 5) {
            let name = "";
            let i: number | undefined;
            for (const a of protoFields(b, f.pos, f.pos + f.len)) {
              if (a.num === 1) name = text(a);
              if (a.num === 3) i = a.value;
            }
            if (i !== undefined) n.ints[name] = i;
          }
        }
        nodes.push(n);
      } else if (g.num === 5) {
        const t: OnnxInit = { dims: [], dtype: 0, raw: new Uint8Array(0) };
        let name = "";
        for (const f of protoFields(b, g.pos, g.pos + g.len)) {
          if (f.num === 1) t.dims.push(f.value);
          else if (f.num === 2) t.dtype = f.value;
          else if (f.num === 8) name = text(f);
          else if (f.num === 9) t.raw = b.slice(f.pos, f.pos + f.len);
        }
        inits.set(name, t);
      }
    }
  }
  return { nodes, inits };
}

const floats = (t: OnnxInit) => new Float32Array(t.raw.buffer, t.raw.byteOffset, t.raw.byteLength / 4);

/** The int8 graph's parts: weight scales and integers (DequantizeLinear of an int8 initializer), activation Q params. */
function quantParts(file: string) {
  const { nodes, inits } = readGraph(file);
  const weightDq = nodes.filter((n) => n.op === "DequantizeLinear" && inits.get(n.inputs[0])?.dtype === 3);
  const actQ = nodes.filter((n) => n.op === "QuantizeLinear");
  assert.ok(weightDq.length >= 9 && actQ.length >= 9, `${file}: not a QDQ graph`);
  return {
    weightScaleCounts: weightDq.map((n) => numel((inits.get(n.inputs[1]) as OnnxInit).dims)),
    weightMaxAbs: Math.max(
      ...weightDq.map((n) => Math.max(...Array.from(new Int8Array((inits.get(n.inputs[0]) as OnnxInit).raw), Math.abs))),
    ),
    activationZeroPointTypes: new Set(actQ.map((n) => inits.get(n.inputs[2])?.dtype)),
    activationScales: new Map(actQ.map((n) => [n.inputs[1], floats(inits.get(n.inputs[1]) as OnnxInit)[0]])),
  };
}

const metadata = (file: string) => readOnnxInfo(file).metadata;

test("precision flags: each changes the exported graph as it says, and infer runs the same model", async () => {
  const d = join(dir, "precision");
  const arch = ["--arch", "vgg11", "--width-divisor", "16", "--num-classes", "10", "--head", "compact"];
  const model = [...arch, "--input-size", "32"];
  const c16 = join(d, "c16.npy");
  const c4 = join(d, "c4.npy");
  const x = randomImages(16, [3, 32, 32], 5);
  mkdirSync(d, { recursive: true });
  writeNpy(c16, x);
  writeNpy(c4, { ...x, shape: [4, 3, 32, 32], data: (x.data as Float32Array).slice(0, 4 * 3 * 32 * 32) });
  const all = ["--per-tensor", "--reduce-range", "--activations", "int8", "--calibrate-method", "percentile", "--percentile", "99.9"];
  const runs: Record<string, string[]> = {
    base: ["--precision", "int8", "--calibrate", c16, "--no-reduce-range"],
    perTensor: ["--precision", "int8", "--calibrate", c16, "--per-tensor"],
    reduceRange: ["--precision", "int8", "--calibrate", c16, "--reduce-range"],
    int8Act: ["--precision", "int8", "--calibrate", c16, "--activations", "int8", "--no-reduce-range"],
    count4: ["--precision", "int8", "--calibrate", c16, "--calibrate-count", "4"],
    first4: ["--precision", "int8", "--calibrate", c4],
    percentile: ["--precision", "int8", "--calibrate", c16, "--calibrate-method", "percentile", "--percentile", "99", "--no-reduce-range"],
    machine: ["--precision", "int8", "--calibrate", c16],
    all: ["--precision", "int8", "--calibrate", c16, "--calibrate-count", "8", ...all],
    fp16: ["--precision", "fp16"],
    fp16Compute: ["--precision", "fp16", "--fp16-compute"],
  };
  const file = (k: string) => join(d, `${k}.onnx`);
  const xin = join(d, "x.npy");
  const x2 = randomImages(2, [3, 32, 32], 6);
  writeNpy(xin, x2);
  const jobs = [
    ...Object.entries(runs).map(
      ([k, a]) =>
        () =>
          vggAsync(["export", ...model, ...a, "--out", file(k)]).then((r) => ok(r, k)),
    ),
    // vgg infer with the same flags must run the very model `export` wrote (same calibration, same numbers).
    () => vggAsync(["infer", ...arch, "--input", xin, "--out", join(d, "y.npy"), ...runs.all]).then((r) => ok(r, "infer")),
    () =>
      vggAsync([
        "export",
        ...model,
        "--precision",
        "int8",
        "--calibrate",
        c16,
        "--calibrate-method",
        "percentile",
        "--percentile",
        "40",
        "--out",
        file("bad"),
      ]),
  ];
  const results = await pool(jobs, 2);

  // A percentile outside (50, 100] is refused in one line and writes nothing.
  assertCleanError(results.at(-1) as RunResult, /--percentile must be in \(50, 100\], got 40/);
  assert.ok(!existsSync(file("bad")));

  const q = Object.fromEntries(["base", "perTensor", "reduceRange", "int8Act", "percentile"].map((k) => [k, quantParts(file(k))]));
  const meta = (k: string) => JSON.parse(metadata(file(k)).quantization);
  assert.deepEqual(meta("base"), {
    activations: "uint8",
    perChannel: true,
    reduceRange: false,
    calibration: { images: 16, method: "minmax" },
  });

  // --per-tensor: one weight scale per tensor, against one per output channel.
  assert.ok(
    q.base.weightScaleCounts.every((n) => n > 1),
    `${q.base.weightScaleCounts}`,
  );
  assert.ok(
    q.perTensor.weightScaleCounts.every((n) => n === 1),
    `${q.perTensor.weightScaleCounts}`,
  );
  assert.equal(meta("perTensor").perChannel, false);

  // --reduce-range: 7-bit weights (|q| <= 64) where the full range reaches 127.
  assert.equal(q.base.weightMaxAbs, 127);
  assert.ok(q.reduceRange.weightMaxAbs <= 64 && q.reduceRange.weightMaxAbs >= 60, `max |q| ${q.reduceRange.weightMaxAbs}`);
  assert.equal(meta("reduceRange").reduceRange, true);
  assert.equal(meta("base").reduceRange, false);
  // Neither flag: 7-bit where this CPU's u8 x s8 sums saturate (x86 without VNNI), else 8-bit.
  assert.equal(meta("machine").reduceRange, cpuSaturatesU8S8());

  // --activations int8: the activations' zero points are int8 (S8S8), uint8 by default.
  assert.deepEqual([...q.base.activationZeroPointTypes], [2]);
  assert.deepEqual([...q.int8Act.activationZeroPointTypes], [3]);

  // --calibrate-count 4: exactly the model calibrated on the first four images alone.
  assert.deepEqual(readFileSync(file("count4")), readFileSync(file("first4")));
  assert.notDeepEqual(readFileSync(file("count4")), readFileSync(file("base")));
  assert.equal(meta("count4").calibration.images, 4);

  // --calibrate-method percentile --percentile 99: ranges clipped inside min-max, never wider.
  let narrower = 0;
  for (const [name, s] of q.percentile.activationScales) {
    const mm = q.base.activationScales.get(name) as number;
    assert.ok(s <= mm * (1 + 1e-6), `${name}: percentile scale ${s} > min-max ${mm}`);
    if (s < 0.99 * mm) narrower++;
  }
  assert.ok(narrower >= q.base.activationScales.size / 2, `only ${narrower} ranges narrowed`);
  assert.deepEqual(meta("percentile").calibration, { images: 16, method: "percentile", percentile: 99 });
  assert.deepEqual(meta("all"), {
    activations: "int8",
    perChannel: false,
    reduceRange: true,
    calibration: { images: 8, method: "percentile", percentile: 99.9 },
  });

  // --fp16-compute: float16 initializers used as they are, casts only at the graph's input and output; plain fp16
  // stores the large weights as float16 and casts each back to float32.
  const h = readGraph(file("fp16Compute"));
  const casts = h.nodes.filter((n) => n.op === "Cast");
  assert.deepEqual(
    casts.map((n) => n.ints.to),
    [10, 1],
  );
  assert.ok([...h.inits.values()].every((t) => t.dtype === 10));
  assert.equal(metadata(file("fp16Compute")).precision, "fp16-compute");
  const s = readGraph(file("fp16"));
  const half = [...s.inits.values()].filter((t) => t.dtype === 10).length;
  assert.ok(half >= 5, `${half} float16 initializers`);
  assert.equal(s.nodes.filter((n) => n.op === "Cast" && n.ints.to === 1).length, half);
  const out: Record<string, Float32Array> = {};
  for (const k of ["fp16", "fp16Compute", "all"]) {
    const sess = await createSession(file(k));
    out[k] = (await sess.run({ input: x2 })).logits.data as Float32Array;
    await sess.release();
  }
  assert.ok(relErr(out.fp16Compute, out.fp16) < 1e-2, `fp16 compute vs storage: ${relErr(out.fp16Compute, out.fp16)}`);
  assert.notDeepEqual(Array.from(out.fp16Compute), Array.from(out.fp16));
  assert.deepEqual(Array.from(readNpy(join(d, "y.npy")).data as Float32Array), Array.from(out.all));
});

// ---------------------------------------------------------------------------------------------------------------
// vgg train

/** n 1x32x32 images sorted by class (n/4 of class 0, then class 1, ...): the file order is visible in a batch. */
function sortedData(d: string, n: number): string {
  const rng = new Xoshiro128(3);
  const x = new Uint8Array(n * 1024);
  const y = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const c = Math.floor((4 * i) / n);
    y[i] = BigInt(c);
    for (let p = 0; p < 1024; p++) x[i * 1024 + p] = Math.floor(rng.next() * 60);
    const oy = 4 + 14 * (c >> 1);
    const ox = 4 + 14 * (c & 1);
    for (let r = 0; r < 10; r++) for (let q = 0; q < 10; q++) x[i * 1024 + (oy + r) * 32 + ox + q] = 200;
  }
  writeNpy(join(d, "xs.npy"), { dtype: "uint8", shape: [n, 1, 32, 32], data: x });
  writeNpy(join(d, "ys.npy"), { dtype: "int64", shape: [n], data: y });
  return `${join(d, "xs.npy")},${join(d, "ys.npy")}`;
}

interface Run {
  out: string;
  stdout: string;
  weights: StateDict;
  momentum: StateDict;
  args: Record<string, unknown>;
  lrs: number[];
}

function readRun(out: string, stdout: string): Run {
  const o = readSafetensorsFile(join(out, "last.optim.safetensors"));
  const state = JSON.parse(o.metadata.state as string) as { args: Record<string, unknown> };
  const lrs = readFileSync(join(out, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as { lr: number }).lr);
  return { out, stdout, weights: readSafetensorsFile(join(out, "last.safetensors")).tensors, momentum: o.tensors, args: state.args, lrs };
}

// Later flags win: a run may give its own --epochs or --batch-size after these.
const TRAIN = ["--head", "compact", "--width-divisor", "16", "--batch-size", "8", "--epochs", "1", "--no-progress", "--workers", "0"];

async function trainRuns(specs: Record<string, string[]>): Promise<Record<string, Run>> {
  const names = Object.keys(specs);
  const runs = await pool(
    names.map((k) => async () => {
      const out = join(dir, "train", k);
      const r = ok(await vggAsync(["train", ...TRAIN, ...specs[k], "--out", out]), `train ${k}`);
      return readRun(out, r.stdout);
    }),
    2,
  );
  return Object.fromEntries(names.map((k, i) => [k, runs[i]]));
}

const arr = (t: Tensor | undefined) => Array.from(t?.data as Float32Array);

/** |a - b| within `rel` of b's largest magnitude, or within `abs` (for tensors that start at zero, e.g. BN shifts). */
function close(a: number[], b: number[], rel: number, abs = 1e-7): boolean {
  const scale = Math.max(...b.map(Math.abs));
  return a.every((v, i) => Math.abs(v - b[i]) <= rel * scale + abs);
}
/** The trained parameters (no BN running statistics), by key. */
const params = (sd: StateDict) => [...sd.keys()].filter((k) => !/running_|num_batches/.test(k));

test("train: --momentum, --weight-decay, --no-decay-bn-bias, --label-smoothing, --no-shuffle act on the SGD update", async () => {
  const d = join(dir, "sgd");
  mkdirSync(d, { recursive: true });
  // 32 images sorted by class, no held-out split, no augmentation: with --no-shuffle the first batch is the eight
  // class-0 images. One step of SGD then leaves buffer = gradient (+ decay), a closed form per flag.
  const common = ["--arch", "vgg11_bn", "--data", `npy:${sortedData(d, 32)}`, "--val", "0", "--augment", "none", "--lr", "0.1"];
  const r = await trainRuns({
    plain: [...common, "--no-shuffle", "--steps", "1", "--weight-decay", "0"],
    smooth: [...common, "--no-shuffle", "--steps", "1", "--weight-decay", "0", "--label-smoothing", "0.2"],
    shuffled: [...common, "--steps", "1", "--weight-decay", "0"],
    decay: [...common, "--no-shuffle", "--steps", "1", "--weight-decay", "0.01"],
    exempt: [...common, "--no-shuffle", "--steps", "1", "--weight-decay", "0.01", "--no-decay-bn-bias"],
    mom0: [...common, "--no-shuffle", "--steps", "2", "--weight-decay", "0.01", "--momentum", "0"],
    mom9: [...common, "--no-shuffle", "--steps", "2", "--weight-decay", "0.01"],
  });
  const buf = (run: Run, k: string) => arr(run.momentum.get(`${k}.momentum_buffer`));

  // --no-shuffle: the first batch is all class 0, so the classifier bias's gradient mean(p - onehot) is negative
  // for class 0 and positive for the others (the bias starts at 0: no decay term). Shuffled, the batch is mixed.
  const g = buf(r.plain, "classifier.bias");
  assert.ok(g[0] < 0 && g.slice(1).every((v) => v > 0), `no-shuffle bias gradient ${g}`);
  assert.equal(r.plain.args.shuffle, false);
  const gs = buf(r.shuffled, "classifier.bias");
  assert.ok(!(gs[0] < -0.5 && gs.slice(1).every((v) => v > 0)), `shuffled bias gradient ${gs} looks like one class`);

  // --label-smoothing 0.2: the targets move from one-hot to 0.85 / 0.05, so the same batch's bias gradient shifts
  // by exactly (onehot - smoothed) = [+0.15, -0.05, -0.05, -0.05].
  const gl = buf(r.smooth, "classifier.bias");
  for (const [c, v] of gl.entries()) assert.ok(Math.abs(v - g[c] - (c === 0 ? 0.15 : -0.05)) < 1e-5, `class ${c}: ${v - g[c]}`);
  assert.equal(r.smooth.args.labelSmoothing, 0.2);

  // --weight-decay 0.01: the first buffer is grad + 0.01 * w0, and w0 = w1 + lr * buffer.
  for (const k of params(r.decay.weights)) {
    const w1 = arr(r.decay.weights.get(k));
    const b = buf(r.decay, k);
    const b0 = buf(r.plain, k);
    const want = w1.map((w, i) => 0.01 * (w + 0.1 * b[i]));
    assert.ok(
      close(
        b.map((v, i) => v - b0[i]),
        want,
        1e-3,
      ),
      `${k}: decay term`,
    );
  }
  // --no-decay-bn-bias: BN scales/shifts and biases (1-D) get no decay (as with --weight-decay 0), the rest do.
  let exempted = 0;
  for (const k of params(r.exempt.weights)) {
    const oneD = (r.exempt.weights.get(k) as Tensor).shape.length === 1;
    const ref = oneD ? r.plain : r.decay;
    assert.ok(close(buf(r.exempt, k), buf(ref, k), 1e-6), `${k}: ${oneD ? "decayed" : "not decayed"}`);
    if (oneD) exempted++;
  }
  assert.equal(exempted, 2 * 8 + 8 + 1, "8 BN layers (weight, bias), 8 conv biases, the classifier's bias");
  assert.equal(r.exempt.args.decayExempt, "bn_and_bias");

  // --momentum: the first step does not depend on it (buffer = gradient), so both runs reach step 2 with the same
  // weights and take the same gradient there; with momentum 0.9 the second update adds 0.9 * the first buffer:
  // w2(momentum 0) - w2(momentum 0.9) = lr * 0.9 * buffer1.
  for (const k of params(r.mom9.weights)) {
    const w0 = arr(r.mom0.weights.get(k));
    const diff = arr(r.mom9.weights.get(k)).map((v, i) => w0[i] - v);
    assert.ok(
      close(
        diff,
        buf(r.decay, k).map((v) => 0.1 * 0.9 * v),
        1e-3,
      ),
      `${k}: momentum term`,
    );
  }
  assert.equal(r.mom0.args.momentum, 0);
  assert.match(r.mom0.stdout, /SGD lr 0\.1 momentum 0 weight decay 0\.01/);

  // Bad values: one line each.
  const bad = await pool(
    [
      () => vggAsync(["train", ...TRAIN, ...common, "--label-smoothing", "1", "--out", join(d, "bad1")]),
      () => vggAsync(["train", ...TRAIN, ...common, "--momentum", "-1", "--out", join(d, "bad2")]),
      () => vggAsync(["train", ...TRAIN, ...common, "--weight-decay", "-1", "--out", join(d, "bad3")]),
    ],
    2,
  );
  assertCleanError(bad[0], /label smoothing must be in \[0, 1\), got 1/);
  assertCleanError(bad[1], /momentum must be >= 0, got -1/);
  assertCleanError(bad[2], /weight decay must be >= 0, got -1/);
});

test("train: --patience and --warmup shape the schedule; --init-from copies net A's layers", async () => {
  const d = join(dir, "sched");
  mkdirSync(d, { recursive: true });
  // 40 toy images: 8 held out, 32 to train on: 2 steps of 16 an epoch.
  const data = `npy:${toyData(d, 40, 1)};${toyData(d, 16, 2)}`;
  const common = ["--data", data, "--val", "8", "--batch-size", "16"];
  const r = await trainRuns({
    // A learning rate too small to move the validation accuracy: every epoch after the first is one without
    // improvement, so --patience 0 cuts after epoch 2 (the default, 2, would wait for epoch 4).
    patience: ["--arch", "vgg11", ...common, "--epochs", "3", "--lr", "1e-7", "--patience", "0"],
    // Cosine with a 2-epoch linear warm-up over 2 epochs: the rate of each epoch's last step is lr/2 then lr.
    warmup: ["--arch", "vgg11_bn", ...common, "--epochs", "2", "--schedule", "cosine", "--warmup", "2", "--lr", "0.02"],
    netA: ["--arch", "vgg11", ...common, "--steps", "1", "--lr", "0.1"],
  });
  assert.deepEqual(r.patience.lrs, [1e-7, 1e-7, 1e-8]);
  assert.match(r.patience.stdout, /epoch 2\/3 .* -> lr 1\.00e-8/);
  assert.equal(r.warmup.lrs.length, 2);
  assert.ok(Math.abs(r.warmup.lrs[0] - 0.01) < 1e-12 && Math.abs(r.warmup.lrs[1] - 0.02) < 1e-12, `${r.warmup.lrs}`);
  assert.equal(r.warmup.args.warmup, 2);

  // --init-from: B (vgg13) starts from A's conv1_1, conv2_1, conv3_1, conv3_2 (matched by the paper's names, not
  // by position: A's conv3_1 is features.6, B's features.10) and its FC layer. A learning rate of 1e-9 leaves
  // B's weights where they started.
  const a = join(r.netA.out, "last.safetensors");
  const [b, bBn] = await pool(
    [
      () =>
        vggAsync([
          "train",
          ...TRAIN,
          "--arch",
          "vgg13",
          ...common,
          "--steps",
          "1",
          "--lr",
          "1e-9",
          "--init-from",
          a,
          "--out",
          join(d, "b"),
        ]),
      () => vggAsync(["train", ...TRAIN, "--arch", "vgg13_bn", ...common, "--steps", "1", "--init-from", a, "--out", join(d, "bbn")]),
    ],
    2,
  );
  ok(b, "init-from");
  assert.match(b.stdout, /conv1_1, conv2_1, conv3_1, conv3_2/);
  const wb = readSafetensorsFile(join(d, "b", "last.safetensors")).tensors;
  const wa = r.netA.weights;
  for (const [kb, ka] of [
    ["features.0.weight", "features.0.weight"],
    ["features.5.weight", "features.3.weight"],
    ["features.10.weight", "features.6.weight"],
    ["features.12.weight", "features.8.weight"],
    ["classifier.weight", "classifier.weight"],
  ]) {
    assert.ok(relErr(arr(wb.get(kb)), arr(wa.get(ka))) < 1e-6, `${kb} from A's ${ka}`);
  }
  assert.equal((wb.get("features.2.weight") as Tensor).shape.join(), "4,4,3,3", "conv1_2 is B's own");
  // A net without batch norm cannot seed one with it: said in one line.
  assertCleanError(bBn, /batch norm/);
});

test("train --scale, --fit, --normalize reach the run's transforms and checkpoint; eval --limit and --split", async () => {
  const d = join(dir, "data");
  mkdirSync(d, { recursive: true });
  const data = `npy:${toyData(d, 40, 1)};${toyData(d, 16, 2)}`;
  const r = await trainRuns({
    scaled: ["--arch", "vgg11_bn", "--data", data, "--steps", "1", "--scale", "40", "--normalize", "none"],
    resized: ["--arch", "vgg11_bn", "--data", data, "--steps", "1", "--input-size", "48", "--fit", "resize", "--normalize", "mean"],
  });
  const aug = (run: Run) => JSON.parse(/^augmentation (.*)$/m.exec(run.stdout)?.[1] ?? "{}");
  const model = (run: Run) =>
    JSON.parse(readSafetensorsFile(join(run.out, "last.safetensors"), { tensors: false }).metadata.model as string);
  // --scale 40: images rescaled to a shorter side of 40, then cropped to 32.
  assert.equal(aug(r.scaled).scale, 40);
  assert.equal(model(r.scaled).preset.scale, 40);
  // --normalize none: no mean/std at all; --normalize mean: the mean subtracted, std 1.
  assert.match(r.scaled.stdout, /^normalisation none$/m);
  assert.deepEqual([model(r.scaled).mean, model(r.scaled).std], [[], []]);
  assert.match(r.resized.stdout, /^normalisation mean \(mean [\d.]+, std 1\.000\)$/m);
  assert.deepEqual(model(r.resized).std, [1]);
  // --fit resize: 32x32 images resized to the 48x48 input (the default pads them).
  assert.equal(aug(r.resized).resize, 48);
  assert.equal(aug(r.resized).padTo, undefined);
  assert.equal(model(r.resized).preset.fit, "resize");

  const ck = join(r.scaled.out, "last.safetensors");
  const ev = await pool(
    [
      () => vggAsync(["eval", "--weights", ck, "--data", data, "--limit", "5", "--json"]),
      () => vggAsync(["eval", "--weights", ck, "--data", data, "--limit", "5", "--json"]),
      () => vggAsync(["eval", "--weights", ck, "--data", data, "--split", "val", "--json"]),
      () => vggAsync(["eval", "--weights", join(r.scaled.out, "best.safetensors"), "--data", data, "--split", "test", "--json"]),
      () => vggAsync(["eval", "--weights", ck, "--data", data, "--limit", "5", "--precision", "int8", "--calibrate", "train"]),
      () => vggAsync(["eval", "--weights", join(r.resized.out, "last.safetensors"), "--data", data, "--limit", "3", "--json"]),
      () => vggAsync(["eval", "--weights", join(r.resized.out, "best.safetensors"), "--data", data, "--json"]),
      // eval's own calibration source: N training images, by train:N or by --calibrate-count.
      ...["train:4", "train --calibrate-count 4", "train"].map(
        (c) => () =>
          vggAsync(["eval", "--weights", ck, "--data", data, "--precision", "fp32,int8", "--calibrate", ...c.split(" "), "--json"]),
      ),
    ],
    2,
  );
  const j = ev.map((e, i) => (i === 4 ? null : JSON.parse(ok(e, `eval ${i}`).stdout)));
  // --limit 5: a seeded subset of five test images, evaluated at the checkpoint's training scale (--scale 40).
  assert.equal(j[0].n, 5);
  assert.deepEqual(j[0].scales, [40]);
  assert.deepEqual({ ...j[0], seconds: 0 }, { ...j[1], seconds: 0 });
  assertCleanError(ev[4], /--limit runs in fp32 only, not with --precision int8/);
  assert.equal(j[5].n, 3);
  assert.deepEqual(j[5].scales, [48]);
  // --split val: the images held out of the training data (a tenth of 40 by default), not the 16 test images.
  assert.equal(j[2].split, "val");
  assert.equal(j[2].n, 4);
  assert.equal(j[3].n, 16);
  // eval scores a checkpoint as its run did (the run's normalisation and input, none or mean here).
  const testOf = (run: Run) => (JSON.parse(readFileSync(join(run.out, "result.json"), "utf8")) as { test: { loss: number } }).test.loss;
  assert.equal(j[3].loss, testOf(r.scaled));
  assert.equal(j[6].loss, testOf(r.resized));
  // --calibrate-count 4 calibrates on the same four images as train:4, not on all 40.
  const int8Loss = (k: number) => (j[k].precisions as { precision: string; loss: number }[]).find((p) => p.precision === "int8")?.loss;
  assert.equal(int8Loss(8), int8Loss(7));
  assert.notEqual(int8Loss(9), int8Loss(7));
});

test("eval --split refuses a split it does not have", async () => {
  const d = join(dir, "split");
  mkdirSync(d, { recursive: true });
  const m = buildModel("vgg11", { widthDivisor: 16, numClasses: 4, inChannels: 1, inputSize: 32, head: "compact" });
  saveCheckpoint(d, "ck", initWeights(m, "torchvision", 1), {
    arch: "vgg11",
    options: m.options,
    labels: ["a", "b", "c", "d"],
    mean: [0.2],
    std: [0.2],
  });
  const data = `npy:${toyData(d, 40, 1)};${toyData(d, 16, 2)}`;
  assertCleanError(await vggAsync(["eval", "--weights", join(d, "ck.safetensors"), "--data", data, "--split", "train"]), /--split/);
});

// ---------------------------------------------------------------------------------------------------------------

test("reproduce --no-bn, --no-init-from-a, --scale: the nets, their starting point and training scale", async () => {
  const d = join(dir, "reproduce");
  mkdirSync(d, { recursive: true });
  const data = `npy:${toyData(d, 40, 1)};${toyData(d, 16, 2)}`;
  const tiny = ["--data", data, "--configs", "A,B", "--jitter-config", "none", "--steps", "1", "--epochs", "1", "--test-images", "8"];
  const more = ["--val", "8", "--width-divisor", "16", "--batch-size", "8", "--no-progress"];
  const [flags, dflt] = await pool(
    [
      () => vggAsync(["reproduce", "--out", join(d, "flags"), ...tiny, ...more, "--no-bn", "--no-init-from-a", "--scale", "40"]),
      () => vggAsync(["reproduce", "--out", join(d, "default"), ...tiny, ...more]),
    ],
    2,
  );
  ok(flags, "reproduce with flags");
  ok(dflt, "reproduce with defaults");
  type Res = {
    settings: { batchNorm: boolean };
    configs: { name: string; arch: string; trainScale: string; initFrom: string | null; evals: { protocol: string; scales: number[] }[] }[];
  };
  const res = (k: string) => JSON.parse(readFileSync(join(d, k, "results.json"), "utf8")) as Res;
  const f = res("flags");
  const g = res("default");
  assert.deepEqual(
    f.configs.map((c) => [c.name, c.arch, c.trainScale, c.initFrom]),
    [
      ["A", "vgg11", "40", null],
      ["B", "vgg13", "40", null],
    ],
  );
  assert.deepEqual(
    g.configs.map((c) => [c.name, c.arch, c.trainScale, c.initFrom === null]),
    [
      ["A", "vgg11_bn", "36", true],
      ["B", "vgg13_bn", "36", false],
    ],
  );
  assert.match(g.configs[1].initFrom as string, /^copied from net A \(vgg11_bn\): conv1_1, conv2_1, conv3_1, conv3_2/);
  assert.equal(f.settings.batchNorm, false);
  // The single-scale test at Q = S, the multi-scale ones at S-4, S, S+4.
  assert.deepEqual(f.configs[0].evals[0].scales, [40]);
  assert.deepEqual(f.configs[0].evals[2].scales, [36, 40, 44]);
  assert.match(flags.stdout, /== B \(vgg13\), S 40\n/);
  assert.match(dflt.stdout, /== B \(vgg13 with BN\), S 36, from A/);
  // The nets trained are the ones named: B's checkpoint has convs and no BN tensors, with and without the flag.
  const keysOf = (k: string) => [...readSafetensorsFile(join(d, k, "runs", "B", "last.safetensors")).tensors.keys()];
  assert.ok(keysOf("flags").includes("features.0.weight") && !keysOf("flags").some((k) => k.includes("running_var")));
  assert.ok(keysOf("default").some((k) => k.includes("running_var")));
});

// ---------------------------------------------------------------------------------------------------------------

test("bench infer --iterations/--warmup and bench train --warmup/--profile: the runs they ask for", async () => {
  const d = join(dir, "bench");
  mkdirSync(d, { recursive: true });
  const model = ["--arch", "vgg11", "--width-divisor", "16", "--num-classes", "10", "--input-size", "32", "--head", "compact"];
  // bench infer prints no count of its untimed runs: a preloaded module counts ORT's session runs instead.
  const hook = join(d, "count-runs.mjs");
  const countFile = join(d, "runs.txt");
  writeFileSync(
    hook,
    [
      'import { writeFileSync } from "node:fs";',
      'import { createRequire } from "node:module";',
      `const ort = createRequire(${JSON.stringify(join(ROOT, "package.json"))})("onnxruntime-node");`,
      "const run = ort.InferenceSession.prototype.run;",
      "let n = 0;",
      "ort.InferenceSession.prototype.run = function (...a) { n++; return run.apply(this, a); };",
      `process.on("exit", () => writeFileSync(${JSON.stringify(countFile)}, String(n)));`,
    ].join("\n"),
  );
  const inf = ok(
    vgg(["bench", "infer", ...model, "--iterations", "3", "--warmup", "4"], {
      env: { NODE_OPTIONS: `--import=${pathToFileURL(hook).href}` },
    }),
    "bench infer",
  );
  assert.match(inf.stdout, /\(median of 3\)/);
  assert.equal(readFileSync(countFile, "utf8"), "7", "4 untimed + 3 timed runs");

  // bench train --profile: ORT's profile of the step session, one model_run per step: 3 untimed + 2 timed.
  const prefix = join(d, "prof");
  const tr = ok(
    await vggAsync(["bench", "train", ...model, "--batch", "4", "--steps", "2", "--warmup", "3", "--profile", prefix, "--json"]),
    "bench train",
  );
  assert.equal(JSON.parse(tr.stdout).batch, 4);
  const prof = readdirSync(d).filter((f) => f.startsWith("prof") && f.endsWith(".json"));
  assert.equal(prof.length, 1, `${readdirSync(d)}`);
  const events = JSON.parse(readFileSync(join(d, prof[0]), "utf8")) as { cat?: string; name: string }[];
  assert.equal(events.filter((e) => e.cat === "Session" && e.name === "model_run").length, 5);
  assertCleanError(await vggAsync(["bench", "infer", ...model, "--warmup", "x"]), /--warmup/);
});

// ---------------------------------------------------------------------------------------------------------------

async function canBind(host: string): Promise<boolean> {
  return new Promise((done) => {
    const s = net.createServer();
    s.once("error", () => done(false));
    s.listen(0, host, () => s.close(() => done(true)));
  });
}

function getJson(url: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    http
      .get(url, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (s: string) => (body += s));
        res.on("end", () => done({ status: res.statusCode ?? 0, body }));
      })
      .on("error", fail);
  });
}

test("serve-demo --host binds where told; --checkpoint gives a gray model its labels and preprocessing", async (t) => {
  if (!existsSync(join(ROOT, "dist", "web", "index.html"))) return t.skip("the page is not built (npm run build:web)");
  // Every 127.x address is loopback on Linux; elsewhere (macOS) only 127.0.0.1 may be configured.
  if (!(await canBind("127.0.0.2"))) return t.skip("127.0.0.2 is not a local address here");
  const d = join(dir, "serve");
  mkdirSync(d, { recursive: true });
  const m = buildModel("vgg11", { widthDivisor: 16, numClasses: 4, inChannels: 1, inputSize: 32, head: "compact" });
  const model = join(d, "gray.onnx");
  writeFileSync(model, encodeInferenceGraph(m, initWeights(m, "torchvision", 1), { taps: ["relu1_1", "logits"] }));
  const names = ["shirt", "bag", "boot", "coat"];
  saveCheckpoint(d, "best", initWeights(m, "torchvision", 1), {
    arch: "vgg11",
    options: m.options,
    labels: names,
    mean: [0.286],
    std: [0.353],
    data: { channels: 1, size: [28, 28] },
    preset: { size: 32 },
  });
  const ck = join(d, "best.safetensors");
  // Without the checkpoint a 1-channel model has no preprocessing to use: the error names --checkpoint.
  assertCleanError(await vggAsync(["serve-demo", "--model", model, "--port", "0"]), /pass --checkpoint/);

  const p = spawn(process.execPath, [BIN, "serve-demo", "--model", model, "--checkpoint", ck, "--host", "127.0.0.2", "--port", "0"], {
    cwd: ROOT,
  });
  try {
    const { url } = await printedUrl(p);
    assert.match(url, /^http:\/\/127\.0\.0\.2:\d+\/$/);
    const info = await getJson(`${url}model.json`);
    assert.equal(info.status, 200);
    const j = JSON.parse(info.body) as {
      labels: string[];
      labelsFrom: string;
      preprocessing: { name: string; transform: { mean: number[]; std: number[] } };
    };
    assert.deepEqual(j.labels, names);
    assert.equal(j.labelsFrom, "checkpoint");
    assert.equal(j.preprocessing.name, "checkpoint");
    assert.deepEqual([j.preprocessing.transform.mean, j.preprocessing.transform.std], [[0.286], [0.353]]);
    // Bound to 127.0.0.2 only: nothing listens on 127.0.0.1 at that port.
    const port = new URL(url).port;
    await assert.rejects(getJson(`http://127.0.0.1:${port}/model.json`), /ECONNREFUSED/);
  } finally {
    const code = await new Promise<number | null>((done) => {
      if (p.exitCode !== null) return done(p.exitCode);
      p.on("close", done);
      p.kill("SIGTERM");
    });
    assert.equal(code, 0);
  }
});
