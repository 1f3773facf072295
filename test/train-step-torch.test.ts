/**
 * One torch.optim.SGD step of every configuration against PyTorch 1.13 (fixtures from scripts/make_train_fixtures.py):
 * the loss, top-1/top-5 hits, and the update (new - old) of every state_dict tensor and momentum buffer, within
 * 1e-3 of the largest absolute element of that update (a conv bias before BN has an exactly-zero true gradient, so
 * its torch update is weight decay plus rounding noise: that is why the scale is per tensor, not per element).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Tensor } from "../src/tensor.js";
import { buildModel, type Head } from "../src/zoo/model.js";
import { readSt, relMaxErr, stepRunner, toNumbers } from "./train-step-helpers.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "test", "fixtures", "train");

interface Case {
  name: string;
  arch: string;
  head: Head;
  widthDivisor: number;
  classes: number;
  batch: number;
  lr: number;
  steps?: number;
  nesterov?: boolean;
  labelSmoothing?: number;
  decayExempt?: "none" | "bn_and_bias";
  /** "background": the batch's images lie on a constant background, so max-pool windows tie. */
  batchKind?: string;
  loss: number;
  correct1: number;
  correct5: number;
}

const manifest = JSON.parse(readFileSync(join(DIR, "manifest.json"), "utf8")) as { cases: Case[] };

/** Conv biases followed by a BatchNorm: their true gradient is 0 and torch's is rounding noise. */
function biasBeforeBn(m: ReturnType<typeof buildModel>): Map<string, string> {
  const out = new Map<string, string>();
  m.layers.forEach((l, k) => {
    if (l.kind === "conv" && m.layers[k + 1]?.kind === "batchnorm") {
      out.set(`${l.name}.bias`, `${l.name}.weight`);
      out.set(`${l.name}.bias.momentum_buffer`, `${l.name}.weight.momentum_buffer`);
    }
  });
  return out;
}

type Variant = { fuse: boolean; convAlgo: "auto" | "im2col" | "winograd" | "nchw"; label: string };
const variants: [Case, Variant][] = manifest.cases.map((c) => [c, { fuse: true, convAlgo: "auto", label: "" }]);
// The unfused paths (conv bias inside the GEMM, BN statistics over it; ReLU before the pool), and every even 3x3
// conv by Winograd (at these widths "auto" picks im2col almost everywhere).
for (const c of manifest.cases) {
  if (c.name === "vgg11_bn_compact_d32" || c.name === "vgg11_bn_paper_d64" || c.name === "vgg11_bn_compact_d32_background")
    variants.push([c, { fuse: false, convAlgo: "im2col", label: " (layers not fused, im2col)" }]);
  if (!c.name.includes("_3steps") && !c.name.includes("nodecay"))
    variants.push([c, { fuse: true, convAlgo: "winograd", label: " (Winograd)" }]);
}
variants.push([
  manifest.cases.find((c) => c.name === "vgg11_compact_d32") as Case,
  { fuse: false, convAlgo: "winograd", label: " (not fused, Winograd)" },
]);
// Every conv by ORT's Conv in NCHW with the tap weight gradient (what "auto" takes from 56x56 maps up).
for (const c of manifest.cases) {
  if (
    [
      "vgg11_bn_compact_d32",
      "vgg11_compact_d32",
      "vgg11_bn_paper_d64",
      "vgg16_1x1_bn_compact_d32",
      "vgg11_bn_compact_d32_background",
    ].includes(c.name)
  )
    variants.push([c, { fuse: true, convAlgo: "nchw", label: " (NCHW Conv)" }]);
}
variants.push([
  manifest.cases.find((c) => c.name === "vgg11_bn_compact_d32") as Case,
  { fuse: false, convAlgo: "nchw", label: " (not fused, NCHW Conv)" },
]);

for (const [c, v] of variants) {
  const fuse = v.fuse;
  test(`SGD step matches torch: ${c.name}${v.label}`, async () => {
    const m = buildModel(c.arch, { head: c.head, numClasses: c.classes, widthDivisor: c.widthDivisor, inputSize: 32, dropout: 0 });
    const init = readSt(join(DIR, `${c.name}.init.safetensors`)).tensors;
    const want = readSt(join(DIR, `${c.name}.update.safetensors`)).tensors;
    const batch = readSt(join(DIR, `batch_${c.batchKind ? `${c.batchKind}_` : ""}n${c.batch}.safetensors`)).tensors;
    const x = batch.get("x") as Tensor;
    const y = batch.get("y") as Tensor;
    const r = await stepRunner(
      m,
      {
        batchSize: c.batch,
        nesterov: c.nesterov,
        labelSmoothing: c.labelSmoothing,
        decayExempt: c.decayExempt,
        fuse,
        convAlgo: v.convAlgo,
      },
      init,
    );
    const first = await r.run(x, y, c.lr);
    for (let s = 1; s < (c.steps ?? 1); s++) await r.run(x, y, c.lr);
    await r.session.release();
    assert.ok(Math.abs((first.loss.data[0] as number) - c.loss) <= 1e-4 * Math.max(1, c.loss), `loss ${first.loss.data[0]} vs ${c.loss}`);
    assert.equal(first.correct1.data[0], c.correct1);
    assert.equal(first.correct5.data[0], c.correct5);
    let checked = 0;
    const nearZero = biasBeforeBn(m);
    const updateOf = (key: string) => {
      const w = want.get(key) as Tensor;
      return toNumbers(w);
    };
    for (const [key, w] of want) {
      const base = key.endsWith(".momentum_buffer") ? undefined : init.get(key);
      const now = key.endsWith(".momentum_buffer") ? r.momentum.get(key) : r.sd.get(key);
      assert.ok(now, `missing ${key}`);
      const ours = base ? toNumbers(now).map((v, k) => v - Number(base.data[k])) : toNumbers(now);
      assert.deepEqual(now.shape, w.shape, key);
      const e = relMaxErr(ours, toNumbers(w));
      // A near-zero-gradient bias is held to its layer's weight update scale instead.
      const partner = nearZero.get(key);
      const scale = partner ? Math.max(e.scale, Math.max(...updateOf(partner).map(Math.abs))) : e.scale;
      assert.ok(
        e.diff <= 1e-3 * scale || e.diff < 1e-12,
        `${c.name} ${key}: max diff ${e.diff.toExponential(2)} vs scale ${scale.toExponential(2)}`,
      );
      checked++;
    }
    assert.equal(checked, r.step.state.length, "every state entry compared");
  });
}
