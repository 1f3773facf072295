/**
 * `vgg reproduce`: the paper's experiments at small scale. Trains A, A-LRN, B, C, D, E (same width, epochs and
 * seed; B-E initialised from A by the paper's rule) at a fixed training scale S, and D again with S jittered;
 * evaluates each with the single, dense, multi-crop and dense+multi-crop protocols; writes results.json,
 * report.md and report.html. Finished runs are reused, interrupted ones resumed, so the command can be rerun.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Split } from "../data/dataset.js";
import { sourceImage } from "../data/dataset.js";
import { loadSharp } from "../data/folder.js";
import { openDataset } from "../data/spec.js";
import { presetTransforms } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { scores } from "../eval/metrics.js";
import { type ProtocolResult as Evaluated, evaluateProtocol, imageFitsInput, subsetSplit, tallyPosteriors } from "../eval/protocols.js";
import { writeFileAtomic } from "../io/atomic.js";
import { benchTrain } from "../train/throughput.js";
import { train } from "../train/trainer.js";
import type { TrainConfig, TrainResult } from "../train/types.js";
import { loadWeights } from "../weights/load.js";
import { buildModel, type ModelOptions, paramCount } from "../zoo/model.js";
import { chanceWarning, findings } from "./findings.js";
import { renderHtml } from "./html.js";
import { renderMarkdown } from "./markdown.js";
import { PAPER_ROWS } from "./paper.js";
import type { ConfigName, ConfigResult, EpochPoint, ProtocolResult, ReproduceResults, WrongExample } from "./results.js";

export const CONFIG_ARCHS: Record<ConfigName, { arch: string; depth: number }> = {
  A: { arch: "vgg11", depth: 11 },
  "A-LRN": { arch: "vgg11_lrn", depth: 11 },
  B: { arch: "vgg13", depth: 13 },
  C: { arch: "vgg16_1x1", depth: 16 },
  D: { arch: "vgg16", depth: 16 },
  E: { arch: "vgg19", depth: 19 },
};

export interface ReproduceOptions {
  out: string;
  data: string;
  budgetMinutes: number;
  configs: ConfigName[];
  /** Train one config a second time with the jittered scale (the paper's Tables 3-5 jitter C, D, E). */
  jitterConfig: ConfigName | null;
  widthDivisor: number;
  head: "paper" | "compact";
  batchNorm: boolean;
  inputSize: number;
  /** Fixed training scale S and the jittered range [Smin, Smax] (shorter side, in the data's pixels). */
  scale: number;
  jitter: [number, number];
  /** Fixed epoch count; by default as many as the budget allows. */
  epochs?: number;
  /** Cap on steps per run (smoke tests). */
  steps?: number;
  batchSize: number;
  lr: number;
  seed: number;
  /** Test images every protocol is evaluated on; by default what the budget allows (at most the whole split). */
  testImages?: number;
  val?: number;
  initFromA: boolean;
  threads?: number;
  progress: boolean;
  command: string;
}

interface Run {
  name: ConfigName;
  arch: string;
  depth: number;
  trainScale: number | [number, number];
  dir: string;
}

const scaleText = (s: number | [number, number]) => (typeof s === "number" ? String(s) : `${s[0]}:${s[1]}`);

/** The protocols' test scales: Q = S (or the jitter's middle); multi-scale S-4, S, S+4 (or Smin, Smid, Smax). */
function testScales(s: number | [number, number], step: number): { single: number; multi: number[] } {
  if (typeof s === "number") return { single: s, multi: [s - step, s, s + step] };
  const mid = Math.round((s[0] + s[1]) / 2);
  return { single: mid, multi: [s[0], mid, s[1]] };
}

/** Forward passes per test image across the evaluations below (dense maps are larger: weighted by area). */
function forwardsPerImage(s: number | [number, number], inputSize: number): number {
  const { single, multi } = testScales(s, 4);
  const area = (q: number) => (Math.max(q, inputSize) / inputSize) ** 2;
  return 1 + 2 * area(single) + multi.reduce((n, q) => n + 2 * area(q) + 50, 0);
}

export async function reproduce(o: ReproduceOptions, log: (l: string) => void = (l) => console.log(l)): Promise<ReproduceResults> {
  const t0 = performance.now();
  const created = new Date().toISOString();
  mkdirSync(o.out, { recursive: true });
  if (!o.configs.includes("A") && o.initFromA) throw new VggError("--init-from-a needs config A in --configs");
  const ds = await openDataset(o.data, { seed: o.seed, val: o.val });
  if (!ds.splits.test)
    throw new VggError(
      "the data has no test split (reproduce scores the nets on images their schedule never saw: for folder data, add DIR/test/CLASS/...)",
      o.data,
    );
  const runs: Run[] = o.configs.map((name) => ({ name, ...CONFIG_ARCHS[name], trainScale: o.scale, dir: join(o.out, "runs", name) }));
  if (o.jitterConfig) {
    const j = CONFIG_ARCHS[o.jitterConfig];
    runs.push({ name: o.jitterConfig, ...j, trainScale: o.jitter, dir: join(o.out, "runs", `${o.jitterConfig}-jitter`) });
  }
  // Multi-crop at scales where every test image fits the crop would repeat dense (evaluateProtocol refuses it): say
  // so before any training, naming this command's flag.
  for (const r of runs) {
    const { multi } = testScales(r.trainScale, 4);
    if (imageFitsInput(multi, o.inputSize, ds.size))
      throw new VggError(
        `${typeof r.trainScale === "number" ? `--scale ${r.trainScale}` : `--jitter ${scaleText(r.trainScale)}`}: at the multi-scale test scales ${multi.join(",")} every test image fits the ${o.inputSize}x${o.inputSize} crop, so multi-crop would equal dense; use ${typeof r.trainScale === "number" ? `--scale ${o.inputSize - 3} or more (default 36)` : `an Smax above ${o.inputSize}`}`,
      );
  }
  const modelOpts = (): ModelOptions => ({
    widthDivisor: o.widthDivisor,
    head: o.head,
    batchNorm: o.batchNorm,
    inputSize: o.inputSize,
    numClasses: ds.classes.length,
    inChannels: ds.channels,
    dropout: o.head === "paper" ? 0.5 : 0,
  });

  // Budget: three quarters for training (the same epochs for every run), a quarter for evaluation.
  const trainImages = ds.splits.train.indices.length;
  let epochs = o.epochs;
  let testImages = o.testImages;
  if (epochs === undefined || testImages === undefined) {
    log(`measuring training speed of ${runs.length} runs for the ${o.budgetMinutes}-minute budget...`);
    let epochSeconds = 0;
    let fixedSeconds = 0;
    let evalSecondsPerImage = 0;
    const valImages = ds.splits.val?.indices.length ?? 0;
    for (const r of runs) {
      const b = await benchTrain({
        arch: r.arch,
        model: modelOpts(),
        batch: o.batchSize,
        steps: 3,
        warmup: 1,
        momentum: 0.9,
        weightDecay: 5e-4,
        nesterov: false,
        decayExempt: "none",
        threads: o.threads,
      });
      // Data loading adds about a tenth; a forward pass (validation, test) is about a third of a training step;
      // each epoch also opens an evaluation session and writes checkpoints (about half a second), and each run
      // builds its step graph and ends with the trainer's own test pass.
      const fwd = 3 * b.imagesPerSecond;
      epochSeconds += (1.1 * trainImages) / b.imagesPerSecond + valImages / fwd + 0.5;
      fixedSeconds += 3 + ds.splits.test!.indices.length / fwd;
      evalSecondsPerImage += forwardsPerImage(r.trainScale, o.inputSize) / (3 * b.imagesPerSecond);
      log(`  ${r.name} (${r.arch}, S ${scaleText(r.trainScale)}): ${b.imagesPerSecond.toFixed(0)} img/s`);
    }
    const budget = o.budgetMinutes * 60;
    epochs ??= Math.max(1, Math.floor((0.75 * budget - fixedSeconds) / epochSeconds));
    testImages ??= Math.max(100, Math.min(ds.splits.test.indices.length, Math.floor((0.2 * budget) / evalSecondsPerImage)));
    log(`plan: ${epochs} epochs per run (about ${((epochs * epochSeconds) / 60).toFixed(0)} min), protocols on ${testImages} test images`);
  }
  const test = subsetSplit(ds.splits.test, testImages, o.seed);

  const results: ConfigResult[] = [];
  let aBest: string | null = null;
  for (const r of runs) {
    const mo = modelOpts();
    const model = buildModel(r.arch, mo);
    const initFrom = o.initFromA && r.name !== "A" && r.name !== "A-LRN" && aBest ? aBest : undefined;
    log(`\n== ${r.name} (${r.arch}${o.batchNorm ? " with BN" : ""}), S ${scaleText(r.trainScale)}${initFrom ? ", from A" : ""}`);
    const tr = await trainOrReuse(r, o, mo, epochs, initFrom, log);
    if (r.name === "A" && r.trainScale === o.scale) aBest = tr.weights;
    const weights = await loadWeights(model, tr.weights);
    const tf = presetTransforms(ds, { size: o.inputSize, channels: ds.channels, scale: r.trainScale }, false);
    const po = { values: { mean: tf.mean, std: tf.std, channels: tf.channels }, native: ds.size, threads: o.threads };
    const sc = testScales(r.trainScale, 4);
    const evals: Evaluated[] = [];
    const ev = async (p: "single" | "dense" | "multicrop", scales: number[]) => {
      const e = await evaluateProtocol(model, weights, test, p, scales, po);
      log(
        `  ${p.padEnd(15)} Q ${scales.join(",").padEnd(10)} top-1 error ${(100 * e.top1Error).toFixed(2)}%  top-5 error ${(100 * e.top5Error).toFixed(2)}%  (${e.seconds.toFixed(0)} s)`,
      );
      if (e.note) log(`  note: ${e.note}`);
      evals.push(e);
      return e;
    };
    const single = await ev("single", [sc.single]);
    await ev("dense", [sc.single]);
    const dense = await ev("dense", sc.multi);
    const crops = await ev("multicrop", sc.multi);
    // dense+multicrop is the mean of the two posteriors already computed (what evaluateProtocol would compute again).
    const post = dense.posteriors.map((v, k) => (v + crops.posteriors[k]) / 2);
    const tally = tallyPosteriors(post, dense.labels, ds.classes.length);
    const both: Evaluated = {
      ...scores(tally),
      protocol: "dense+multicrop",
      scales: sc.multi,
      seconds: dense.seconds + crops.seconds,
      posteriors: post,
      labels: dense.labels,
      tally,
    };
    log(
      `  ${"dense+multicrop".padEnd(15)} Q ${sc.multi.join(",").padEnd(10)} top-1 error ${(100 * both.top1Error).toFixed(2)}%  top-5 error ${(100 * both.top5Error).toFixed(2)}%`,
    );
    evals.push(both);
    results.push({
      name: r.name,
      arch: r.arch + (o.batchNorm ? "_bn" : ""),
      depth: r.depth,
      params: paramCount(model),
      trainScale: scaleText(r.trainScale),
      initFrom: tr.initFrom ?? (initFrom ? "net A" : null),
      trainSeconds: tr.seconds,
      epochs: tr.epochs.map(
        (e): EpochPoint => ({
          epoch: e.epoch,
          lr: e.lr,
          trainLoss: e.trainLoss,
          trainTop1: e.trainTop1,
          valLoss: e.val?.loss ?? null,
          valTop1: e.val?.top1 ?? null,
          seconds: e.seconds,
        }),
      ),
      evals: evals.map(
        (e): ProtocolResult => ({
          protocol: e.protocol,
          scales: e.scales,
          n: e.n,
          top1: e.top1,
          top5: e.top5,
          top1Error: e.top1Error,
          top5Error: e.top5Error,
          loss: e.loss,
          seconds: e.seconds,
        }),
      ),
      confusion: Array.from({ length: ds.classes.length }, (_, t) =>
        Array.from(single.tally.confusion.subarray(t * ds.classes.length, (t + 1) * ds.classes.length)),
      ),
      worst: await worstExamples(single, test, ds.classes.length),
    });
  }
  const out: ReproduceResults = {
    version: 1,
    created,
    command: o.command,
    data: o.data,
    classes: ds.classes,
    settings: {
      widthDivisor: o.widthDivisor,
      head: o.head,
      batchNorm: o.batchNorm,
      inputSize: o.inputSize,
      epochs: epochs as number,
      batchSize: o.batchSize,
      lr: o.lr,
      seed: o.seed,
      budgetMinutes: o.budgetMinutes,
      testImages: test.indices.length,
    },
    wallSeconds: (performance.now() - t0) / 1000,
    configs: results,
    findings: [],
    paper: PAPER_ROWS,
  };
  out.findings = findings(out);
  const enc = (s: string) => [new TextEncoder().encode(s)];
  writeFileAtomic(join(o.out, "results.json"), enc(`${JSON.stringify(out, null, 1)}\n`));
  writeFileAtomic(join(o.out, "report.md"), enc(renderMarkdown(out)));
  writeFileAtomic(join(o.out, "report.html"), enc(renderHtml(out)));
  log(`\nwrote ${join(o.out, "report.html")}, report.md, results.json (${(out.wallSeconds / 60).toFixed(1)} min)`);
  const warning = chanceWarning(out);
  if (warning) log(`warning: ${warning}`);
  return out;
}

async function trainOrReuse(
  r: Run,
  o: ReproduceOptions,
  model: ModelOptions,
  epochs: number,
  initFrom: string | undefined,
  log: (l: string) => void,
): Promise<TrainResult> {
  const arch = r.arch + (o.batchNorm ? "_bn" : "");
  const done = join(r.dir, "result.json");
  if (existsSync(done)) {
    const prev = JSON.parse(readFileSync(done, "utf8")) as TrainResult & { arch: string };
    if (prev.arch === arch && prev.epochs.length === epochs) {
      log(`  reusing the finished run in ${r.dir}`);
      return prev;
    }
    throw new VggError(
      `holds a finished run of ${prev.arch} for ${prev.epochs.length} epochs, not ${arch} for ${epochs}: use another --out`,
      r.dir,
    );
  }
  const cfg: TrainConfig = {
    arch,
    model,
    data: o.data,
    out: r.dir,
    epochs,
    batchSize: o.batchSize,
    lr: o.lr,
    momentum: 0.9,
    weightDecay: 5e-4,
    nesterov: false,
    decayExempt: "none",
    labelSmoothing: 0,
    schedule: "cosine",
    patience: 2,
    init: "torchvision",
    initFrom,
    seed: o.seed,
    steps: o.steps,
    shuffle: true,
    flip: true,
    scale: r.trainScale,
    fit: "pad",
    normalize: "meanstd",
    val: o.val,
    threads: o.threads,
    resume: existsSync(join(r.dir, "last.safetensors")),
    progress: o.progress,
  };
  return train(cfg, (l) => log(`  ${l}`));
}

/** The test images the single-scale protocol gets wrong most confidently, as PNG data URLs. */
async function worstExamples(e: Evaluated, split: Split, K: number, count = 8): Promise<WrongExample[]> {
  const wrong: WrongExample[] = [];
  for (let i = 0; i < e.n; i++) {
    const row = e.posteriors.subarray(i * K, (i + 1) * K);
    let arg = 0;
    for (let k = 1; k < K; k++) if (row[k] > row[arg]) arg = k;
    if (arg !== e.labels[i]) wrong.push({ index: i, label: e.labels[i], predicted: arg, confidence: row[arg], png: "" });
  }
  wrong.sort((a, b) => b.confidence - a.confidence);
  const top = wrong.slice(0, count);
  for (const w of top) w.png = await pngDataUrl(split, w.index);
  return top;
}

async function pngDataUrl(split: Split, i: number): Promise<string> {
  const img = await sourceImage(split.source, split.indices[i]);
  const { c, h, w } = img;
  const hwc = new Uint8Array(c * h * w);
  const scale = img.data instanceof Uint8Array ? 1 : 255;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let ch = 0; ch < c; ch++)
        hwc[(y * w + x) * c + ch] = Math.max(0, Math.min(255, Math.round(img.data[(ch * h + y) * w + x] * scale)));
  const sharp = await loadSharp();
  const png = await sharp(hwc, { raw: { width: w, height: h, channels: c as 1 | 3 } })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString("base64")}`;
}
