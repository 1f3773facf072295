/**
 * `vgg convert` and weight round trips through the real binary: an initialised model written as safetensors
 * gives the same logits as the same seeded init; a converted golden .pth gives the same logits as the .pth.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy } from "../src/io/npy.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import { readSafetensorsFile, writeSafetensors } from "../src/weights/index.js";
import { initWeights } from "../src/weights/init.js";
import { readPth } from "../src/weights/pth.js";
import { buildModel } from "../src/zoo/model.js";
import { pool, ROOT, relErr, tmp, vggAsync } from "./helpers.js";

const G = join(ROOT, "test", "fixtures", "golden");
const X = join(G, "x_b2_c3_32.npy");
const SMALL = ["--width-divisor", "16", "--head", "compact", "--num-classes", "10"];
const dir = tmp("vgg-convert-");

async function ok(args: string[]): Promise<string> {
  const r = await vggAsync(args);
  assert.equal(r.status, 0, `vgg ${args.join(" ")}\n${r.stderr}`);
  assert.equal(r.stderr, "", r.stderr);
  return r.stdout;
}

function bytes(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Same keys in the same order, same dtypes, shapes and bytes. */
function sameStateDict(a: StateDict, b: StateDict, what: string): void {
  assert.deepEqual([...a.keys()], [...b.keys()], `${what}: keys`);
  for (const [k, t] of a) {
    const u = b.get(k) as Tensor;
    assert.equal(u.dtype, t.dtype, `${what}: ${k} dtype`);
    assert.deepEqual(u.shape, t.shape, `${what}: ${k} shape`);
    assert.ok(bytes(t).equals(bytes(u)), `${what}: ${k} values`);
  }
}

test("an initialised model saved as safetensors infers exactly like the same seeded init", async () => {
  const cases = [
    { arch: "vgg11_bn", init: "torchvision", seed: 5, head: "compact", classes: 7 },
    { arch: "vgg11_lrn", init: "glorot", seed: 11, head: "paper", classes: 3 },
    { arch: "vgg16_1x1", init: "paper", seed: 0, head: "compact", classes: 4 },
  ] as const;
  const jobs: (() => Promise<unknown>)[] = [];
  const pairs: [string, string][] = [];
  for (const c of cases) {
    const model = ["--arch", c.arch, "--width-divisor", "16", "--head", c.head, "--num-classes", String(c.classes)];
    const m = buildModel(c.arch, { widthDivisor: 16, head: c.head, numClasses: c.classes, inputSize: 32 });
    const st = join(dir, `${c.arch}-init.safetensors`);
    writeSafetensors(st, initWeights(m, c.init, c.seed));
    const a = join(dir, `${c.arch}-from-file.npy`);
    const b = join(dir, `${c.arch}-from-seed.npy`);
    pairs.push([a, b]);
    jobs.push(() => ok(["infer", ...model, "--weights", st, "--input", X, "--out", a]));
    jobs.push(() => ok(["infer", ...model, "--init", c.init, "--seed", String(c.seed), "--input", X, "--out", b]));
  }
  await pool(jobs);
  for (const [a, b] of pairs) {
    const ya = readNpy(a);
    const yb = readNpy(b);
    assert.deepEqual(ya.shape, yb.shape);
    assert.ok(bytes(ya).equals(bytes(yb)), `${a} and ${b} differ`);
    // Not a degenerate pass: the logits are not all equal.
    assert.ok(new Set(ya.data as Float32Array).size > 1);
  }
});

test("vgg convert of golden .pth fixtures (zip and legacy) gives the .pth's logits through infer", async () => {
  const manifest = JSON.parse(readFileSync(join(G, "manifest.json"), "utf8")) as {
    cases: { name: string; arch: string; weights: string; format: string; input: string; expected: { logits: string } }[];
  };
  const jobs: (() => Promise<unknown>)[] = [];
  const checks: { name: string; outs: string[]; expected: string; pth: string; st: string[] }[] = [];
  for (const name of ["vgg11_compact_d16", "vgg11_bn_compact_d16"]) {
    const c = manifest.cases.find((k) => k.name === name);
    assert.ok(c, name);
    const pth = join(G, c.weights);
    const model = ["--arch", c.arch, ...SMALL];
    const plain = join(dir, `${name}.safetensors`);
    const checked = join(dir, `${name}.checked.safetensors`);
    const input = join(G, c.input);
    const outs = [pth, plain, checked].map((_, k) => join(dir, `${name}.logits${k}.npy`));
    // convert first (both ways), then infer from the .pth and from each conversion.
    jobs.push(async () => {
      const said = await ok(["convert", "--in", pth, "--out", plain]);
      assert.match(said, new RegExp(`wrote .*${name}\\.safetensors \\(\\d+ tensors, [\\d,]+ values\\)`));
      await ok(["infer", ...model, "--weights", plain, "--input", input, "--out", outs[1]]);
    });
    jobs.push(async () => {
      const said = await ok(["convert", "--in", pth, "--out", checked, ...model]);
      assert.match(said, new RegExp(`checked against ${c.arch}\\)`));
      await ok(["infer", ...model, "--weights", checked, "--input", input, "--out", outs[2]]);
    });
    jobs.push(() => ok(["infer", ...model, "--weights", pth, "--input", input, "--out", outs[0]]));
    checks.push({ name, outs, expected: join(G, c.expected.logits), pth, st: [plain, checked] });
    assert.ok(["zip", "legacy"].includes(c.format));
  }
  await pool(jobs);
  for (const k of checks) {
    const [ref, ...rest] = k.outs.map((p) => readNpy(p));
    for (const y of rest) assert.ok(bytes(y).equals(bytes(ref)), `${k.name}: converted weights give other logits`);
    // And both agree with PyTorch's logits for these weights.
    const want = readNpy(k.expected);
    assert.ok(relErr(ref.data as Float32Array, want.data as Float32Array) <= 1e-4, `${k.name} vs PyTorch`);
    // Without --arch the file holds the .pth's tensors as they are; with --arch, as the model loads them.
    const src = readPth(k.pth);
    const plain = readSafetensorsFile(k.st[0]);
    sameStateDict(src, plain.tensors, `${k.name} plain`);
    assert.deepEqual(plain.metadata, { format: "pt" });
    const checked = readSafetensorsFile(k.st[1]);
    assert.equal(checked.metadata.arch, k.name.startsWith("vgg11_bn") ? "vgg11_bn" : "vgg11");
    assert.deepEqual(new Set(checked.tensors.keys()), new Set(src.keys()));
  }
});

test("a DataParallel 'module.' prefix is dropped by infer and by convert; convert of safetensors is lossless", async () => {
  const pth = join(G, "vgg11_compact_d16.pth");
  const sd = readPth(pth);
  const prefixed: StateDict = new Map([...sd].map(([k, t]) => [`module.${k}`, t]));
  const dp = join(dir, "dataparallel.safetensors");
  writeSafetensors(dp, prefixed);
  const model = ["--arch", "vgg11", ...SMALL];
  const [a, b, c] = ["dp-a.npy", "dp-b.npy", "dp-c.npy"].map((n) => join(dir, n));
  const stripped = join(dir, "dp-stripped.safetensors");
  const again = join(dir, "dp-again.safetensors");
  await pool<unknown>([
    () => ok(["infer", ...model, "--weights", dp, "--input", X, "--out", a]),
    () => ok(["infer", ...model, "--weights", pth, "--input", X, "--out", b]),
    async () => {
      await ok(["convert", "--in", dp, "--out", stripped]);
      await ok(["convert", "--in", stripped, "--out", again]);
      await ok(["infer", ...model, "--weights", again, "--input", X, "--out", c]);
    },
  ]);
  const ya = readNpy(a);
  assert.ok(bytes(ya).equals(bytes(readNpy(b))));
  assert.ok(bytes(ya).equals(bytes(readNpy(c))));
  sameStateDict(sd, readSafetensorsFile(stripped).tensors, "stripped");
  sameStateDict(sd, readSafetensorsFile(again).tensors, "converted twice");
});
