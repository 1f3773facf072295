/**
 * Golden tests: our ONNX graphs on ORT against PyTorch's outputs for the same weights and inputs.
 * Fixtures come from scripts/make_fixtures.py (Debian's torch + torchvision); they are committed, so these run
 * without PyTorch. The full-size checks below need /usr/bin/python3 with torch and generate their files.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy } from "../src/io/npy.js";
import { Predictor } from "../src/predict/predictor.js";
import { hasTorch, ROOT, relErr, tmp, vgg } from "./helpers.js";

const DIR = join(ROOT, "test", "fixtures", "golden");

interface Case {
  name: string;
  arch: string;
  options: { numClasses: number; inChannels: number; widthDivisor: number; head: "paper" | "compact" };
  inputSize: number;
  weights: string;
  format: "zip" | "legacy";
  input: string;
  expected: Record<string, string>;
}

const manifest = JSON.parse(readFileSync(join(DIR, "manifest.json"), "utf8")) as { tolerance: { relative: number }; cases: Case[] };

test("fixtures cover all twelve archs, both .pth formats, paper head at 32/100/257 and 224", () => {
  const archs = new Set(manifest.cases.map((c) => c.arch));
  assert.equal(archs.size, 12);
  assert.deepEqual(new Set(manifest.cases.map((c) => c.format)), new Set(["zip", "legacy"]));
  const paperSizes = new Set(manifest.cases.filter((c) => c.options.head === "paper").map((c) => c.inputSize));
  for (const s of [32, 100, 224, 257]) assert.ok(paperSizes.has(s), `paper head at ${s}`);
});

// Winograd forced on for every 3x3 conv, and off (direct Conv); the default, auto, runs in the full-size tests below.
for (const c of manifest.cases)
  for (const winograd of ["on", "off"] as const) {
    test(`golden ${c.name} (${c.format} .pth), Winograd ${winograd}: every tap within ${manifest.tolerance.relative} of PyTorch`, async () => {
      const taps = Object.keys(c.expected);
      const p = await Predictor.create(c.arch, { ...c.options, inputSize: c.inputSize, weights: join(DIR, c.weights), taps, winograd });
      const out = await p.run(await readNpy(join(DIR, c.input)));
      for (const t of taps) {
        const want = await readNpy(join(DIR, c.expected[t]));
        assert.deepEqual(out[t].shape, want.shape, `${t} shape`);
        const e = relErr(out[t].data as Float32Array, want.data as Float32Array);
        assert.ok(e <= manifest.tolerance.relative, `${c.name} ${t}: relative error ${e}`);
      }
      await p.release();
    });
  }

// Full size: torchvision's own vgg16 and vgg11_bn, saved by torch in both formats, loaded by the real CLI.
for (const [arch, legacy] of [
  ["vgg16", false],
  ["vgg11_bn", true],
] as const) {
  test(`full-size ${arch} (${legacy ? "legacy" : "zip"} .pth from torch.save) through vgg infer`, {
    skip: !hasTorch() && "needs /usr/bin/python3 with torch",
    timeout: 300_000,
  }, async () => {
    const d = tmp();
    const py = spawnSync(
      "/usr/bin/python3",
      [join(ROOT, "scripts", "fullsize_check.py"), "--arch", arch, "--dir", d, ...(legacy ? ["--legacy"] : [])],
      { encoding: "utf8", timeout: 240_000 },
    );
    assert.equal(py.status, 0, py.stderr);
    const r = vgg(["infer", "--arch", arch, "--weights", join(d, `${arch}.pth`), "--input", join(d, "x.npy"), "--out", join(d, "y.npy")], {
      timeout: 240_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const got = await readNpy(join(d, "y.npy"));
    const want = await readNpy(join(d, "logits.npy"));
    assert.deepEqual(got.shape, want.shape);
    const e = relErr(got.data as Float32Array, want.data as Float32Array);
    assert.ok(e <= 1e-4, `relative error ${e}`);
  });
}
