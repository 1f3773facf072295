/**
 * Weight averaging beside SGD (Fashion-MNIST's last tenths of a percent):
 * - `--ema DECAY`: an exponential moving average of the weights and BN running statistics, as timm's ModelEmaV2:
 *   it starts as the starting weights and after every step ema = decay * ema + (1 - decay) * w. Validated each
 *   epoch beside the raw weights; ema.safetensors (the latest) and ema-best.safetensors (best by its validation).
 * - `--swa-start E`: stochastic weight averaging as torch.optim.swa_utils.AveragedModel's default: the equal
 *   average of the weights at the end of epochs E..epochs; at the end its BN statistics are recomputed over the
 *   training data as swa_utils.update_bn does (a cumulative average of the batches' statistics, the model in
 *   training mode, no update). swa.safetensors.
 * The arithmetic runs on ORT (graph/average.ts). The averages' state rides in the optimizer file of `last` (keys
 * prefixed `ema.` and `swa.`), so it is committed with the step it belongs to and a resumed run continues it exactly.
 */
import { existsSync } from "node:fs";
import type { Dataset, Split } from "../data/dataset.js";
import { BatchLoader } from "../data/loader.js";
import type { TransformConfig } from "../data/transforms.js";
import { evalWeights } from "../eval/evaluate.js";
import type { Scores } from "../eval/metrics.js";
import { AVG_SUFFIX, type AveragedEntry, buildAverageGraph, buildBnStatsGraph } from "../graph/average.js";
import { NEXT_SUFFIX, trainStepState } from "../graph/train-step.js";
import { encodeModel } from "../onnx/encode.js";
import { createSession, type Session } from "../runtime/ort.js";
import { numel, type StateDict, type Tensor } from "../tensor.js";
import { loadWeights } from "../weights/load.js";
import type { ModelMeta } from "../weights/model-meta.js";
import type { VggModel } from "../zoo/model.js";
import { checkpointPaths, saveCheckpoint } from "./checkpoint.js";
import { dropsLastBatch } from "./config.js";
import type { AveragedTest, Log, RunConfig, TrainerState } from "./types.js";

const EMA_PREFIX = "ema.";
const SWA_PREFIX = "swa.";

const scalar = (v: number): Tensor => ({ dtype: "float32", shape: [], data: Float32Array.of(v) });

function get(sd: StateDict, key: string): Tensor {
  const t = sd.get(key);
  if (!t) throw new Error(`state lacks ${key}`);
  return t;
}

/** One averaging graph's session: avg <- a * avg + b * w over its entries, replacing the tensors of `avg`. */
export class TensorAverage {
  private constructor(
    private readonly session: Session,
    readonly entries: AveragedEntry[],
  ) {}

  static async open(entries: AveragedEntry[], threads?: number): Promise<TensorAverage> {
    // Run between two steps: spinning threads would hold the cores the next step wants (see SessionOptions.spinning).
    const session = await createSession(encodeModel(buildAverageGraph(entries)), { threads, spinning: false });
    return new TensorAverage(session, entries);
  }

  async apply(avg: StateDict, w: StateDict, a: number, b: number): Promise<void> {
    const feeds: Record<string, Tensor> = { a: scalar(a), b: scalar(b) };
    for (const { key } of this.entries) {
      feeds[key] = get(w, key);
      feeds[key + AVG_SUFFIX] = get(avg, key);
    }
    const out = await this.session.run(feeds);
    for (const { key } of this.entries) avg.set(key, out[key + AVG_SUFFIX + NEXT_SUFFIX]);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** The float tensors a step changes (parameters and BN statistics; a frozen prefix has none): what the EMA averages. */
export function emaEntries(m: VggModel, freeze = 0): AveragedEntry[] {
  return trainStepState(m, { momentum: 0, freeze })
    .filter((e) => e.dtype === "float32")
    .map(({ key, shape }) => ({ key, shape }));
}

/** The trainable parameters: AveragedModel's default averages parameters, not buffers (update_bn redoes those). */
export function swaEntries(m: VggModel, freeze = 0): AveragedEntry[] {
  return trainStepState(m, { momentum: 0, freeze })
    .filter((e) => e.kind === "param")
    .map(({ key, shape }) => ({ key, shape }));
}

/** What the averages add to a run's memory: each one's state, and the new copy its graph returns beside it. */
export function averagingBytes(cfg: { ema?: number; swaStart?: number }, m: VggModel, freeze = 0): number {
  const bytes = (entries: AveragedEntry[]) => entries.reduce((n, e) => n + 4 * numel(e.shape), 0);
  const ema = cfg.ema !== undefined ? bytes(emaEntries(m, freeze)) : 0;
  const swa = cfg.swaStart !== undefined ? bytes(swaEntries(m, freeze)) : 0;
  return 2 * (ema + swa);
}

/** timm's ModelEmaV2 update: ema = decay * ema + (1 - decay) * w, in place in `ema`. */
export async function emaUpdate(op: TensorAverage, ema: StateDict, w: StateDict, decay: number): Promise<void> {
  await op.apply(ema, w, decay, 1 - decay);
  // num_batches_tracked counts steps rather than measuring anything: the EMA model carries the raw count.
  for (const [k, t] of w) if (t.dtype === "int64") ema.set(k, t);
}

/** AveragedModel.update_parameters with the default avg_fn: `n` models averaged so far; the first is copied. */
export async function swaUpdate(op: TensorAverage, swa: StateDict, w: StateDict, n: number): Promise<void> {
  if (n === 0) {
    for (const [k, t] of w) swa.set(k, t);
    return;
  }
  await op.apply(swa, w, n / (n + 1), 1 / (n + 1));
}

/**
 * torch.optim.swa_utils.update_bn: every trainable BN layer's running statistics reset, then recomputed with
 * momentum None (the plain mean over `batches` of each batch's mean and unbiased variance) from forward passes in
 * training mode; num_batches_tracked = the number of batches. Returns new weights (the input is not changed) and
 * the number of batches; the weights as they are when no BN layer trains.
 */
export async function updateBn(
  m: VggModel,
  weights: StateDict,
  batches: AsyncIterable<{ x: Float32Array; n: number }>,
  o: { freeze?: number; threads?: number } = {},
): Promise<{ weights: StateDict; batches: number }> {
  const probe = buildBnStatsGraph(m, { batchSize: 1, freeze: o.freeze });
  if (!probe) return { weights, batches: 0 };
  const out = new Map(weights);
  resetRunningStats(out, probe.stats);
  const avg = await TensorAverage.open(
    probe.stats.map(({ key }) => ({ key, shape: get(weights, key).shape })),
    o.threads,
  );
  const graphs = new Map<number, { g: NonNullable<ReturnType<typeof buildBnStatsGraph>>; session: Session }>();
  let k = 0;
  try {
    for await (const b of batches) {
      const sg = graphs.get(b.n) ?? (await openStatsGraph(m, b.n, o));
      graphs.set(b.n, sg);
      const feeds: Record<string, Tensor> = { x: { dtype: "float32", shape: [b.n, ...m.inputShape], data: b.x } };
      for (const key of sg.g.inputs) feeds[key] = get(weights, key);
      const r = await sg.session.run(feeds);
      k++;
      // torch's cumulative average: factor 1 / k, running = (1 - 1/k) * running + (1/k) * batch.
      await avg.apply(out, new Map(sg.g.stats.map((s) => [s.key, r[s.output]])), 1 - 1 / k, 1 / k);
    }
  } finally {
    await avg.release();
    for (const { session } of graphs.values()) await session.release();
  }
  for (const { key } of probe.stats.filter((s) => s.key.endsWith(".running_mean"))) {
    const counter = key.replace(/running_mean$/, "num_batches_tracked");
    out.set(counter, { dtype: "int64", shape: [], data: BigInt64Array.of(BigInt(k)) });
  }
  return { weights: out, batches: k };
}

async function openStatsGraph(m: VggModel, n: number, o: { freeze?: number; threads?: number }) {
  const g = buildBnStatsGraph(m, { batchSize: n, freeze: o.freeze });
  if (!g) throw new Error("no BN layer trains");
  return { g, session: await createSession(encodeModel(g.spec), { threads: o.threads }) };
}

/** BatchNorm's reset_running_stats: mean 0, variance 1. */
function resetRunningStats(sd: StateDict, stats: { key: string }[]): void {
  for (const { key } of stats) {
    const n = get(sd, key).data.length;
    sd.set(key, { dtype: "float32", shape: [n], data: new Float32Array(n).fill(key.endsWith(".running_var") ? 1 : 0) });
  }
}

/** What of a run the averages work with (the trainer's Run has all of it). */
export interface AveragingRun {
  dir: string;
  cfg: RunConfig;
  ds: Dataset;
  train: Split;
  model: VggModel;
  /** Leading layers frozen (0: none). */
  freeze: number;
  trainTf: TransformConfig;
  evalTf: TransformConfig;
  meta: ModelMeta;
  weights: StateDict;
  state: TrainerState;
}

/** The `keys` of `sd` that start with `prefix`, without it; undefined when there are none. */
function unprefixed(sd: StateDict, prefix: string): StateDict | undefined {
  const out: StateDict = new Map();
  for (const [k, t] of sd) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), t);
  return out.size > 0 ? out : undefined;
}

/** The momentum buffers of an optimizer file (without the averages' state). */
export function momentumOf(optim: StateDict): StateDict {
  return new Map([...optim].filter(([k]) => !k.startsWith(EMA_PREFIX) && !k.startsWith(SWA_PREFIX)));
}

/** The trainer's averages: their state, their sessions while training, their part of the checkpoint. */
export class Averages {
  private emaOp?: TensorAverage;
  private swaOp?: TensorAverage;

  private constructor(
    private readonly run: AveragingRun,
    /** The EMA of the weights and BN statistics (--ema). */
    readonly ema: StateDict | undefined,
    /** The running mean of the weights at epoch ends (--swa-start), of state.swaCount of them. */
    readonly swa: StateDict | undefined,
  ) {}

  /**
   * Null without --ema and --swa-start. A new run's EMA starts as its starting weights; a resumed run's averages
   * come from its optimizer file (`optim`).
   */
  static of(run: AveragingRun, optim?: StateDict): Averages | null {
    const { ema, swaStart } = run.cfg;
    if (ema === undefined && swaStart === undefined) return null;
    const saved = (prefix: string) => (optim ? unprefixed(optim, prefix) : undefined);
    return new Averages(
      run,
      ema === undefined ? undefined : (saved(EMA_PREFIX) ?? new Map(run.weights)),
      swaStart === undefined ? undefined : (saved(SWA_PREFIX) ?? new Map()),
    );
  }

  async open(): Promise<void> {
    const { model, freeze, cfg } = this.run;
    if (this.ema) this.emaOp ??= await TensorAverage.open(emaEntries(model, freeze), cfg.threads);
    if (this.swa) this.swaOp ??= await TensorAverage.open(swaEntries(model, freeze), cfg.threads);
  }

  async release(): Promise<void> {
    await this.emaOp?.release();
    await this.swaOp?.release();
    this.emaOp = this.swaOp = undefined;
  }

  /** After every step: the EMA moves towards the new weights. */
  async afterStep(w: StateDict): Promise<void> {
    if (this.ema && this.emaOp) await emaUpdate(this.emaOp, this.ema, w, this.run.cfg.ema as number);
  }

  /** The optimizer file's tensors: the momentum buffers and, prefixed, the averages' state. */
  packed(momentum: StateDict): StateDict {
    const out = new Map(momentum);
    for (const [k, t] of this.ema ?? []) out.set(EMA_PREFIX + k, t);
    for (const [k, t] of this.swa ?? []) out.set(SWA_PREFIX + k, t);
    return out;
  }

  /**
   * At the end of epoch `epoch` (1-based), before `last` is written: SWA takes the weights from --swa-start on; the
   * EMA is validated and written (ema.safetensors, and ema-best.safetensors when its validation accuracy improved).
   * Returns the EMA's validation scores (null without a validation split; undefined without --ema).
   */
  async endEpoch(epoch: number): Promise<Scores | null | undefined> {
    const { run } = this;
    const { state, cfg } = run;
    if (this.swa && this.swaOp && epoch >= (cfg.swaStart as number)) {
      await swaUpdate(this.swaOp, this.swa, run.weights, state.swaCount ?? 0);
      state.swaCount = (state.swaCount ?? 0) + 1;
    }
    if (!this.ema) return undefined;
    const val = run.ds.splits.val;
    const scores = val ? await evalWeights(run.model, this.ema, val, run.evalTf, { threads: cfg.threads, device: cfg.device }) : null;
    if (scores && scores.top1 > (state.bestEmaValAcc ?? -1)) {
      state.bestEmaValAcc = scores.top1;
      state.bestEmaEpoch = epoch;
      saveCheckpoint(run.dir, "ema-best", this.ema, run.meta);
    }
    saveCheckpoint(run.dir, "ema", this.ema, run.meta);
    return scores;
  }

  /** SWA's last step: update_bn over the training data, then swa.safetensors. Nothing when no epoch was averaged. */
  async finish(log: Log): Promise<void> {
    const { run } = this;
    const { cfg, state } = run;
    if (!this.swa) return;
    const n = state.swaCount ?? 0;
    if (n === 0) {
      log(`SWA: no epoch reached --swa-start ${cfg.swaStart}: nothing averaged, no swa.safetensors`);
      return;
    }
    const loader = new BatchLoader(run.train, {
      batchSize: cfg.batchSize,
      shuffle: cfg.shuffle,
      dropLast: dropsLastBatch(cfg, run.model, run.train.indices.length),
      transforms: run.trainTf,
      seed: cfg.seed,
      workers: cfg.workers,
    });
    let bn: Awaited<ReturnType<typeof updateBn>>;
    try {
      // One more pass of the training loader, as update_bn(train_loader, swa_model): the epoch after the last.
      bn = await updateBn(run.model, this.swa, loader.epoch(cfg.epochs), { freeze: run.freeze, threads: cfg.threads });
    } finally {
      await loader.close();
    }
    saveCheckpoint(run.dir, "swa", bn.weights, run.meta);
    const last = state.epoch;
    log(
      `SWA: the weights of epochs ${cfg.swaStart}-${last} averaged (${n})${bn.batches ? `, BN statistics recomputed over ${bn.batches} training batches` : ""}: ${checkpointPaths(run.dir, "swa").weights}`,
    );
  }
}

/** The EMA (its best by validation, else its latest) and the SWA model on the test split, each logged. */
export async function testAverages(run: AveragingRun, log: Log): Promise<{ ema?: AveragedTest; swa?: AveragedTest }> {
  const { cfg, state, dir } = run;
  const out: { ema?: AveragedTest; swa?: AveragedTest } = {};
  const best = checkpointPaths(dir, "ema-best").weights;
  if (cfg.ema !== undefined) {
    const byVal = existsSync(best) && state.bestEmaEpoch !== undefined;
    const weights = byVal ? best : checkpointPaths(dir, "ema").weights;
    const epoch = byVal ? (state.bestEmaEpoch as number) : state.epoch;
    const what = `EMA decay ${cfg.ema}, epoch ${epoch}${byVal ? ", best by its validation" : ""}`;
    if (existsSync(weights)) out.ema = { weights, epoch, test: await testFile(run, weights, what, log) };
  }
  const swa = checkpointPaths(dir, "swa").weights;
  if (cfg.swaStart !== undefined && existsSync(swa)) {
    const epochs: [number, number] = [cfg.swaStart, state.epoch];
    out.swa = { weights: swa, epochs, test: await testFile(run, swa, `SWA of epochs ${epochs.join("-")}`, log) };
  }
  return out;
}

async function testFile(run: AveragingRun, path: string, what: string, log: Log): Promise<Scores | null> {
  const test = run.ds.splits.test;
  if (!test) return null;
  const s = await evalWeights(run.model, await loadWeights(run.model, path), test, run.evalTf, {
    threads: run.cfg.threads,
    device: run.cfg.device,
  });
  log(`test (${s.n} images, ${what}): top-1 ${(100 * s.top1).toFixed(2)}%  top-5 ${(100 * s.top5).toFixed(2)}%  loss ${s.loss.toFixed(4)}`);
  return s;
}

/** report.md's lines for the averaged models' test results. */
export function averagedReportLines(r: { ema?: AveragedTest; swa?: AveragedTest }, decay?: number): string[] {
  const pct = (x: number) => (100 * x).toFixed(2);
  const protocol = (a: AveragedTest) =>
    a.testProtocol
      ? ` Under the ${a.testProtocol.protocol} protocol: top-1 ${pct(a.testProtocol.top1)}%, top-5 ${pct(a.testProtocol.top5)}%.`
      : "";
  const line = (name: string, a: AveragedTest) =>
    a.test
      ? `${name}: top-1 ${pct(a.test.top1)}%, top-5 ${pct(a.test.top5)}%, loss ${a.test.loss.toFixed(4)} (\`${a.weights.split(/[\\/]/).pop()}\`).${protocol(a)}`
      : `${name}: \`${a.weights.split(/[\\/]/).pop()}\` (no test split).`;
  const out: string[] = [];
  if (r.ema) out.push(line(`EMA of the weights (decay ${decay}, epoch ${r.ema.epoch})`, r.ema));
  if (r.swa)
    out.push(line(`SWA, the weights of epochs ${r.swa.epochs?.join("-")} averaged, BN statistics recomputed on the training data`, r.swa));
  return out;
}
