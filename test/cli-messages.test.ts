/**
 * What the CLI says, through the real binary: errors that name the real problem first (a file that is no weights,
 * a tap the model lacks, the model a mismatched file is), one line on success for `vgg infer`, predictions without
 * labels, and a refused `vgg train` that leaves no run directory behind.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { assertCleanError, pool, ROOT, type RunResult, tmp, toyData, vggAsync } from "./helpers.js";

const G = join(ROOT, "test", "fixtures", "golden");
const X = join(G, "x_b2_c3_32.npy");
const SMALL = ["--width-divisor", "16", "--head", "compact"];
const dir = tmp("vgg-messages-");

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Runs the cases two at a time, then checks each as a one-line error matching its pattern. */
async function cleanErrors(cases: [string[], RegExp][]): Promise<void> {
  const runs = await pool(
    cases.map(
      ([args]) =>
        () =>
          vggAsync(args),
    ),
  );
  runs.forEach((r: RunResult, k) => {
    const [args, pattern] = cases[k];
    try {
      assertCleanError(r, pattern);
    } catch (err) {
      throw new Error(`vgg ${args.join(" ")}: ${(err as Error).message}`);
    }
  });
}

test("a text file named .pth is 'not a weights file', with --arch or without", async () => {
  const text = join(dir, "notes.pth");
  writeFileSync(text, "these are not weights\n");
  const out = join(dir, "y.npy");
  const want = new RegExp(`^vgg: ${esc(text)}: not a weights file`);
  await cleanErrors([
    [["infer", "--weights", text, "--input", X, "--out", out], want],
    [["infer", "--arch", "vgg11", ...SMALL, "--weights", text, "--input", X, "--out", out], want],
    [["convert", "--in", text, "--out", join(dir, "c.safetensors")], want],
  ]);
});

test("a strict load that fails says which model the file is: its classes, its zoo arch", async () => {
  const out = join(dir, "c.safetensors");
  const v11bn = join(G, "vgg11_bn_compact_d16.pth");
  const v13bn = join(G, "vgg13_bn_compact_d16.pth");
  const v16c = join(G, "vgg16_1x1_compact_d16.pth");
  await cleanErrors([
    // The default 1000 classes against a 10-class file.
    [
      ["convert", "--arch", "vgg11_bn", ...SMALL, "--in", v11bn, "--out", out],
      /key 'classifier\.weight' has shape \[10, 32\], vgg11_bn \(compact head, 1000 classes, width \/16\) needs \[1000, 32\]; the file has 10 classes: pass --num-classes 10$/,
    ],
    // Another depth.
    [
      ["convert", "--arch", "vgg11_bn", ...SMALL, "--num-classes", "10", "--in", v13bn, "--out", out],
      /vgg11_bn \(compact head, 10 classes, width \/16\) needs \[8, 4, 3, 3\]; the file fits vgg13_bn: pass --arch vgg13_bn$/,
    ],
    // Both at once.
    [
      ["convert", "--arch", "vgg11_bn", ...SMALL, "--in", v13bn, "--out", out],
      /; the file fits vgg13_bn with 10 classes: pass --arch vgg13_bn --num-classes 10$/,
    ],
    // The same hint wherever weights are loaded strictly: infer too (config C's 1x1 convs loaded as D).
    [
      ["infer", "--arch", "vgg16", ...SMALL, "--num-classes", "10", "--weights", v16c, "--input", X, "--out", join(dir, "y.npy")],
      /needs \[16, 16, 3, 3\]; the file fits vgg16_1x1: pass --arch vgg16_1x1$/,
    ],
  ]);
});

test("a tap the model lacks is refused before any weights are read", async () => {
  const nope = join(dir, "no-such-weights.pth");
  const tap = /^vgg: unknown tap 'relu4_3' for vgg11_bn \(known: /;
  const model = ["--arch", "vgg11_bn", "--weights", nope, "--tap", "relu4_3"];
  await cleanErrors([
    [["infer", ...model, "--input", X, "--out", join(dir, "y.npy")], tap],
    [["export", ...model, "--out", join(dir, "m.onnx")], tap],
    [["features", X, ...model, "--out", join(dir, "f.safetensors")], tap],
    [["predict", X, ...model, "--out", join(dir, "taps")], tap],
    // Nor are int8 calibration data read first.
    [
      [
        "export",
        "--arch",
        "vgg11_bn",
        ...SMALL,
        "--tap",
        "relu4_3",
        "--precision",
        "int8",
        "--calibrate",
        join(dir, "nope.npy"),
        "--out",
        join(dir, "m.onnx"),
      ],
      tap,
    ],
  ]);
});

test("vgg infer prints one line: what it wrote, the shape, the tap and the time", async () => {
  const out = join(dir, "logits.npy");
  const r = await vggAsync(["infer", "--arch", "vgg11", ...SMALL, "--num-classes", "10", "--input", X, "--out", out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${esc(out)}: float32 \\[2, 10\\] \\(tap logits\\), \\d+\\.\\d\\d s\\n$`));
  assert.ok(existsSync(out));
  const pool5 = join(dir, "pool5.npy");
  const t = await vggAsync(["infer", "--arch", "vgg11", ...SMALL, "--tap", "pool5", "--input", X, "--out", pool5]);
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, new RegExp(`^${esc(pool5)}: float32 \\[2, 32, 1, 1\\] \\(tap pool5\\), \\d+\\.\\d\\d s\\n$`));
});

test("vgg predict without labels prints each class index once", async () => {
  const img = join(dir, "red.png");
  await sharp({ create: { width: 40, height: 40, channels: 3, background: { r: 255, g: 0, b: 0 } } })
    .png()
    .toFile(img);
  const r = await vggAsync(["predict", img, "--arch", "vgg11", ...SMALL, "--num-classes", "10", "--input-size", "32", "--top", "3"]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  assert.equal(lines[0], img);
  assert.equal(lines.length, 4);
  for (const l of lines.slice(1)) assert.match(l, /^ +\d+\.\d\d% +\d$/);
});

test("a refused vgg train leaves no run directory behind, but keeps one that was there", async () => {
  const d = tmp();
  const data = `npy:${toyData(d, 8, 1)}`;
  const run = (name: string) => join(d, name, "run");
  const v13 = join(G, "vgg13_compact_d16.pth");
  const train = ["train", "--steps", "1", "--no-progress"];
  await cleanErrors([
    [[...train, "--arch", "vgg12", "--data", data, "--out", run("arch")], /unknown arch 'vgg12'/],
    [[...train, "--arch", "vgg11", ...SMALL, "--data", `folder:${join(d, "nope")}`, "--out", run("data")], /nope: no such directory/],
    [
      [...train, "--arch", "vgg16", "--width-divisor", "8", "--head", "compact", "--data", data, "--init-from", v13, "--out", run("init")],
      /not a zoo VGG/,
    ],
  ]);
  // Neither the run directory nor the parent this call created for it.
  for (const name of ["arch", "data", "init"]) assert.equal(existsSync(join(d, name)), false, name);
  const kept = join(d, "kept");
  mkdirSync(kept);
  await cleanErrors([[[...train, "--arch", "vgg12", "--data", data, "--out", kept], /unknown arch 'vgg12'/]]);
  assert.ok(existsSync(kept));
});

test("vgg summary counts multiply-adds in GMACs, as vgg list does", async () => {
  const r = await vggAsync(["summary", "vgg16"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^total mult-adds: 15,470,264,320 {2}\(15\.47 GMACs\)$/m);
  assert.doesNotMatch(r.stdout, /GFLOP/);
});
