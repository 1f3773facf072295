/**
 * The training driver: data in worker threads, the whole SGD step as one ONNX graph on ORT, the paper's
 * learning-rate schedule on a held-out validation split, atomic checkpoints, exact resume, divergence guard.
 * This file is the run and its epoch loop; its parts are config.ts (defaults, resume), signals.ts, guard.ts,
 * checkpoint.ts, report.ts (report.md, metrics.jsonl), averaging.ts (--ema, --swa-start) and types.ts.
 * The test split is touched once, at the end, with the best checkpoint.
 *
 * Crash safety: the run directory is locked (lock.ts); every file is written atomically (temp file, fsync,
 * rename); checkpoints (every epoch, and every --checkpoint-every steps) carry everything the run's future depends
 * on: weights, momentum, schedule, step, loader position, the epoch's running sums, the divergence guard's window
 * and the metrics history. A run killed at any moment and resumed from its last checkpoint therefore ends with
 * the same weights and metrics as one never interrupted (the data a step sees is a function of (seed, epoch,
 * batch), its dropout of (seed, step)).
 */
import { existsSync, mkdirSync, rmdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Dataset, Split } from "../data/dataset.js";
import { BatchLoader } from "../data/loader.js";
import { checkDataExists, openDataset } from "../data/spec.js";
import { evalScale, presetTransforms } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { evalWeights } from "../eval/evaluate.js";
import type { Scores } from "../eval/metrics.js";
import { checkCropRoom, evaluateProtocol, type Protocol } from "../eval/protocols.js";
import { checkMemory, estimateTraining } from "../graph/memory.js";
import { encodeTrainStep, resolveFreeze, trainSessionOptions, zeroMomentum } from "../graph/train-step.js";
import { fsError, writeTextAtomic } from "../io/atomic.js";
import type { EngineOptions } from "../predict/predictor.js";
import { forChannels } from "../predict/preprocess.js";
import { hash32 } from "../random.js";
import { resolveDevice } from "../runtime/device.js";
import { createSession, type Session } from "../runtime/ort.js";
import type { StateDict } from "../tensor.js";
import { initFromFile } from "../weights/init-from.js";
import { loadWeights } from "../weights/load.js";
import type { ModelMeta } from "../weights/model-meta.js";
import { fitStart, resolveStart, type Start } from "../weights/start.js";
import { buildModel, type ModelOptions } from "../zoo/model.js";
import { Averages, type AveragingRun, averagedReportLines, averagingBytes, momentumOf, testAverages } from "./averaging.js";
import { type Checkpoint, checkpointPaths, loadCheckpoint, recoverCheckpoint, saveCheckpoint } from "./checkpoint.js";
import { dropsLastBatch, newRunConfig, resumedConfig, resumeHint, withStartDefaults } from "./config.js";
import { assertFinite, guardDivergence, keptNote } from "./guard.js";
import { acquireRunLock } from "./lock.js";
import { fmtTime, Progress } from "./progress.js";
import { describeRun, jsonl, readHistory, writeReport } from "./report.js";
import { Schedule } from "./schedule.js";
import { catchSignals, type Stop, TrainInterrupted } from "./signals.js";
import { runTrainStep, type StepBatch } from "./step-runner.js";
import type { AveragedTest, EpochMetrics, Log, RunConfig, TrainConfig, TrainerState, TrainResult } from "./types.js";

/**
 * Trains `cfgIn.out`, holding the run directory's lock (lock.ts) for the whole run. Ctrl-C (SIGINT) is handled
 * while it runs: the current step finishes, a checkpoint is written at the loader's position, and the run ends
 * with TrainInterrupted; a second Ctrl-C exits at once (the last checkpoint written stays valid).
 */
export async function train(cfgIn: TrainConfig, log: Log = (l) => console.log(l)): Promise<TrainResult> {
  const t0 = performance.now();
  const dir = cfgIn.out;
  // The first directory this call creates (undefined: it existed), removed again should the run fail before writing.
  let created: string | undefined;
  if (cfgIn.resume) {
    if (!existsSync(dir)) throw new VggError("no checkpoint to resume from", checkpointPaths(dir, "last").weights);
  } else {
    try {
      created = mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw fsError(dir, err, "create the run directory");
    }
  }
  const lock = acquireRunLock(dir, log);
  const sigint = catchSignals(log);
  let done = false;
  try {
    const result = await trainLocked(cfgIn, log, t0, sigint);
    done = true;
    return result;
  } finally {
    sigint.detach();
    lock.release();
    if (!done && created) removeEmptyDirs(dir, created);
  }
}

/**
 * Removes `dir`, then its parents up to `top`, each only while empty: a run refused before it wrote anything (unknown
 * arch, missing data, refused --init-from) leaves no directory behind. rmdir refuses a directory that holds anything,
 * so a run's files (an interrupted run's checkpoint) are never touched.
 */
function removeEmptyDirs(dir: string, top: string): void {
  const stop = resolve(top);
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty, or gone: kept as it is
    }
    if (d === stop || dirname(d) === d) return;
  }
}

/** Everything one run works with, set up before its first step (AveragingRun: what the averages read of it). */
interface Run extends AveragingRun {
  momentum: StateDict;
  schedule: Schedule;
  history: EpochMetrics[];
  /** The divergence guard's window of recent full-batch losses. */
  recent: number[];
  /** What --init-from copied. */
  initFrom?: string;
  /** --ema, --swa-start (averaging.ts); null without them. */
  averages: Averages | null;
  last: string;
  metricsPath: string;
}

/** The threads and device the run's sessions use. */
function engineOf(cfg: RunConfig): EngineOptions {
  return { threads: cfg.threads, device: cfg.device };
}

/** A step graph for one batch size and its session. */
type StepGraph = { step: Omit<ReturnType<typeof encodeTrainStep>, "bytes">; session: Session };

async function trainLocked(cfgIn: TrainConfig, log: Log, t0: number, sigint: Stop): Promise<TrainResult> {
  const { cfg, ckpt } = runSettings(cfgIn, log);
  const run = await setUp(cfg, ckpt, log);
  await trainEpochs(run, sigint, log);
  // Training is over and checkpointed: from here a signal ends the process as usual (a resume redoes the test).
  sigint.detach();
  await run.averages?.finish(log);
  return testAndReport(run, t0, log);
}

/** The run's settings: a new run's, or (--resume) the saved ones with this call's overrides, and its checkpoint. */
function runSettings(cfgIn: TrainConfig, log: Log): { cfg: RunConfig; ckpt?: Checkpoint } {
  const dir = cfgIn.out;
  // Under the lock: finish or drop a checkpoint a crash interrupted, remove temp files of interrupted writes.
  for (const line of recoverCheckpoint(dir, "last")) log(`${dir}: ${line}`);
  if (!cfgIn.resume) {
    if (existsSync(checkpointPaths(dir, "last").weights))
      throw new VggError("already holds a run: pass --resume to continue it, or choose another --out", dir);
    return { cfg: newRunConfig(cfgIn) };
  }
  const ckpt = loadCheckpoint(dir, "last");
  const cfg = resumedConfig(cfgIn, ckpt.state.args as unknown as RunConfig, dir);
  const pos = ckpt.state.position;
  log(
    pos && pos.epoch === ckpt.state.epoch
      ? `resuming ${dir} in epoch ${pos.epoch + 1} after batch ${pos.batch} (step ${ckpt.state.step})`
      : `resuming ${dir} after epoch ${ckpt.state.epoch} (step ${ckpt.state.step})`,
  );
  return { cfg, ckpt };
}

/** Data, model, transforms and the starting state (fresh, or the checkpoint's). */
async function setUp(cfgIn: RunConfig, ckpt: Checkpoint | undefined, log: Log): Promise<Run> {
  // The device first (a machine without the GPU asked for is told before any data is read); "auto" resolved once.
  let cfg: RunConfig = { ...cfgIn, device: await resolveDevice(cfgIn.device, log) };
  // A new run's starting weights are read first: they give the input channels and the normalisation a fine-tuning
  // run defaults to (saved with the run's args, so a resumed run keeps them without the file). What can be checked
  // without them is checked before: a typo should not wait for a 500 MB download.
  if (!ckpt) {
    checkDataExists(cfg.data);
    if (cfg.freeze !== undefined) resolveFreeze(buildModel(cfg.arch, cfg.model), cfg.freeze);
  }
  const start = ckpt ? undefined : await resolveStart(cfg.init, cfg.arch, log);
  if (start) cfg = withStartDefaults(cfg, start);
  const ds = await openDataset(cfg.data, { seed: cfg.seed, val: cfg.val, channels: cfg.model.inChannels === 1 ? 1 : 3 });
  if (!ds.splits.train) throw new VggError("the data has no training split", cfg.data);
  const { model, freeze, trainTf, evalTf, meta } = modelFor(cfg, ds);
  const dir = cfg.out;
  const run: Run = {
    ...{ dir, cfg, ds, train: ds.splits.train, model, freeze, trainTf, evalTf, meta },
    ...{ weights: new Map(), momentum: new Map(), history: [], recent: [], averages: null },
    schedule: new Schedule(
      { kind: cfg.schedule, lr: cfg.lr, epochs: cfg.epochs, patience: cfg.patience, warmup: cfg.warmup },
      ckpt?.state.schedule,
    ),
    state: ckpt?.state as TrainerState,
    last: checkpointPaths(dir, "last").weights,
    metricsPath: join(dir, "metrics.jsonl"),
  };
  // Given now (a new run, or a resume that changes it): refused before training rather than "not scored" after it.
  if (cfg.testProtocol !== ckpt?.state.args.testProtocol) checkTestProtocol(run);
  if (ckpt) {
    run.weights = ckpt.weights;
    run.momentum = momentumOf(ckpt.momentum);
  } else await startFresh(run, start as Start, log);
  run.averages = Averages.of(run, ckpt?.momentum);
  const state = run.state;
  // The checkpoint is the record: metrics.jsonl holds exactly its completed epochs (a crashed run may have written
  // a line the checkpoint does not cover; the resumed run writes it again). Checkpoints from before the history
  // was kept in them fall back to the file's own lines up to the checkpoint's epoch.
  run.history = state.history ? state.history.slice(0, state.epoch) : readHistory(run.metricsPath).filter((e) => e.epoch <= state.epoch);
  writeTextAtomic(run.metricsPath, jsonl(run.history));
  run.recent = state.recent ? [...state.recent] : [];
  return run;
}

/** --test-protocol multicrop where every crop is the same window (Fashion-MNIST at its own scale): a one-line refusal. */
function checkTestProtocol(run: Run): void {
  const p = run.cfg.testProtocol;
  if (!p || !run.ds.splits.test) return;
  try {
    checkCropRoom(p, [evalScale(run.evalTf, run.ds.size)], run.model.inputShape[1], run.ds.size);
  } catch (err) {
    throw err instanceof VggError ? new VggError(`--test-protocol ${err.message}`) : err;
  }
}

/** The model the data and settings call for, its transforms and the description its checkpoints carry. */
function modelFor(cfg: RunConfig, ds: Dataset) {
  const inputSize = cfg.model.inputSize ?? (ds.size ? Math.max(32, ds.size[0]) : 224);
  const numClasses = cfg.model.numClasses ?? ds.classes.length;
  // A subset need not hold every class: labels must lie in [0, N), that is all.
  if (numClasses < ds.classes.length)
    throw new VggError(
      `--num-classes ${numClasses} but the data has ${ds.classes.length} classes (labels up to ${ds.classes.length - 1})`,
      cfg.data,
    );
  const classes = [...ds.classes, ...Array.from({ length: numClasses - ds.classes.length }, (_, i) => String(ds.classes.length + i))];
  const inChannels = cfg.model.inChannels ?? ds.channels;
  const modelOptions: ModelOptions = { ...cfg.model, inputSize, numClasses, inChannels };
  const model = buildModel(cfg.arch, modelOptions);
  // --freeze: the number of leading layers frozen (0: none), resolved before any work so a bad name fails at once.
  const freeze = cfg.freeze === undefined ? 0 : resolveFreeze(model, cfg.freeze);
  const resizedCrop = cfg.resizedCrop === "auto" ? ds.size === null : Boolean(cfg.resizedCrop);
  const cropPadding = cfg.resizedCrop === "auto" && !resizedCrop ? undefined : cfg.cropPadding;
  const preset = {
    size: inputSize,
    channels: inChannels,
    fit: cfg.fit,
    scale: cfg.scale,
    cropPadding,
    randomCrop: cropPadding !== 0,
    flip: cfg.flip,
    lighting: cfg.lighting,
    erase: cfg.erase,
    resizedCrop,
    normalize: cfg.normalize,
    ...forChannels(cfg.normalizeTo, ds.channels),
  };
  const trainTf = presetTransforms(ds, preset, true);
  const evalTf = presetTransforms(ds, preset, false);
  // data + preset: what `vgg predict` needs to call presetTransforms(..., false) as evaluation does here.
  const meta: ModelMeta = {
    arch: cfg.arch,
    options: model.options,
    labels: classes,
    mean: trainTf.mean ?? [],
    std: trainTf.std ?? [],
    data: { channels: ds.channels, size: ds.size },
    preset,
  };
  return { model, freeze, trainTf, evalTf, meta };
}

/** SGD's settings. With freeze: a frozen layer gets no momentum buffer (zeroMomentum) and no update (the step graph). */
function sgdOf(run: Run) {
  const { cfg } = run;
  return { momentum: cfg.momentum, weightDecay: cfg.weightDecay, nesterov: cfg.nesterov, decayExempt: cfg.decayExempt, freeze: run.freeze };
}

/** A new run's weights (the start fitted to the model, then --init-from), zero momentum and state. */
async function startFresh(run: Run, start: Start, log: Log): Promise<void> {
  const { cfg, model } = run;
  const fit = fitStart(model, start, cfg.seed);
  run.weights = fit.weights;
  if (fit.summary) log(`${cfg.init}: ${fit.summary}`);
  if (cfg.initFrom) {
    const r = await initFromFile(model, run.weights, cfg.initFrom);
    run.weights = r.weights;
    run.initFrom = r.summary;
    log(`${cfg.initFrom}: ${r.summary}`);
  }
  run.momentum = zeroMomentum(model, sgdOf(run));
  run.state = {
    epoch: 0,
    step: 0,
    schedule: run.schedule.state,
    bestValAcc: -1,
    bestEpoch: -1,
    args: { ...cfg } as Record<string, unknown>,
  };
  log(describeRun(cfg, run.ds, model, run.trainTf));
}

/**
 * The step graphs. The graph's batch is fixed: a partial last batch gets a graph of its own. Both are built (and
 * their memory counted) before the first step, so that a run which cannot hold them fails now, not an epoch in.
 */
async function openSteps(run: Run, dropLast: boolean): Promise<Map<number, StepGraph>> {
  const { cfg, model, freeze } = run;
  const nTrain = run.train.indices.length;
  const sizes = [...new Set([nTrain >= cfg.batchSize ? cfg.batchSize : 0, dropLast ? 0 : nTrain % cfg.batchSize])].filter((n) => n > 0);
  if (sizes.length === 0)
    throw new VggError(
      `the training split has ${nTrain} images, fewer than one batch of ${cfg.batchSize} (and --drop-last drops it)`,
      cfg.data,
    );
  const estimates = sizes.map((n) => estimateTraining(model, n, freeze));
  const shared = estimates[0].parts.runtime + estimates[0].parts.weights;
  const averaged = averagingBytes(cfg, model, freeze);
  checkMemory(
    `training ${cfg.arch} at batch ${sizes[0]}, input ${model.inputShape[1]}${sizes.length > 1 ? ` (and a last batch of ${sizes[1]})` : ""}`,
    {
      total: estimates.reduce((t, e) => t + e.total - shared, shared) + averaged,
      parts: { ...estimates[0].parts, weights: estimates[0].parts.weights + averaged },
    },
    "lower --batch-size or --input-size, or raise --width-divisor",
  );
  const steps = new Map<number, StepGraph>();
  for (const n of sizes) {
    // Frozen tensors are baked in as constants (ORT prepacks them); `weights` keeps them, unchanged, for checkpoints.
    const frozenWeights = freeze > 0 ? run.weights : undefined;
    const device = cfg.device === "webgpu" ? "webgpu" : "cpu";
    const { bytes, ...step } = encodeTrainStep(model, {
      ...sgdOf(run),
      batchSize: n,
      labelSmoothing: cfg.labelSmoothing,
      frozenWeights,
      device,
    });
    // The bytes (with frozen weights, as large as they are) are not kept past the session's creation.
    const memory = trainSessionOptions(model, freeze, device);
    steps.set(n, { step, session: await createSession(bytes, { ...memory, threads: cfg.threads, device }) });
  }
  return steps;
}

/** Writes last (and best) with the state as it is; a failed write says the previous checkpoint is kept. */
function writeCheckpoint(run: Run, name: "last" | "best", position?: TrainerState["position"], partial?: TrainerState["partial"]): void {
  const { dir, state } = run;
  state.history = run.history;
  state.recent = run.recent;
  state.position = position;
  state.partial = partial;
  try {
    if (name === "last") saveCheckpoint(dir, "last", run.weights, run.meta, run.averages?.packed(run.momentum) ?? run.momentum, state);
    else saveCheckpoint(dir, "best", run.weights, run.meta);
  } catch (err) {
    const e = err instanceof VggError ? err : fsError(dir, err, "write");
    const kept = keptNote(checkpointPaths(dir, name).weights, "the previous checkpoint");
    throw new VggError(
      `${e.file ? e.message.slice(e.file.length + 2) : e.message}; checkpoint of step ${state.step} not written, ${kept}`,
      e.file,
    );
  }
}

/** The epochs left to run, each ended by validation, checkpoints and a line in metrics.jsonl. */
async function trainEpochs(run: Run, sigint: Stop, log: Log): Promise<void> {
  const { cfg, state } = run;
  const dropLast = dropsLastBatch(cfg, run.model, run.train.indices.length);
  const steps = await openSteps(run, dropLast);
  await run.averages?.open();
  const loader = new BatchLoader(run.train, {
    batchSize: cfg.batchSize,
    shuffle: cfg.shuffle,
    dropLast,
    transforms: run.trainTf,
    seed: cfg.seed,
    workers: cfg.workers,
  });
  const interrupted = (where: string) => {
    const hint = resumeHint(cfg);
    return new TrainInterrupted(
      `interrupted ${where} step ${state.step} (checkpoint written in ${run.dir}): resume with ${hint}`,
      hint,
      sigint.exitCode,
    );
  };
  try {
    let stopped = false;
    for (let epoch = state.epoch; epoch < cfg.epochs && !stopped; epoch++) {
      const te = performance.now();
      const sums = await trainEpoch(run, epoch, te, loader, steps, sigint, interrupted);
      stopped = sums.stopped;
      await endEpoch(run, epoch, sums, te, log);
      if (sigint.requested && state.epoch < cfg.epochs && !stopped) throw interrupted(`after epoch ${epoch + 1}`);
    }
  } finally {
    await loader.close();
    for (const { session } of steps.values()) await session.release();
    await run.averages?.release();
  }
}

/** An epoch's running sums over its training batches. */
interface EpochSums {
  lossSum: number;
  hits: number;
  seen: number;
  lr: number;
  /** Images trained in this call (not before a resume). */
  seenHere: number;
  /** --steps reached. */
  stopped: boolean;
}

/** One epoch's steps, from a mid-epoch checkpoint's batch when there is one. */
async function trainEpoch(
  run: Run,
  epoch: number,
  te: number,
  loader: BatchLoader,
  steps: Map<number, StepGraph>,
  sigint: Stop,
  interrupted: (where: string) => TrainInterrupted,
): Promise<EpochSums> {
  const { cfg, state, model } = run;
  const perEpoch = loader.batchesPerEpoch;
  const every = cfg.checkpointEvery;
  // A checkpoint taken inside this epoch: continue at its batch with the epoch's sums so far.
  const at = state.position?.epoch === epoch ? state.position : undefined;
  const part = at ? state.partial : undefined;
  const s: EpochSums = {
    lossSum: part?.lossSum ?? 0,
    hits: part?.hits ?? 0,
    seen: part?.seen ?? 0,
    lr: part?.lr ?? 0,
    seenHere: 0,
    stopped: false,
  };
  let k = at?.batch ?? 0;
  const bar = new Progress(`epoch ${epoch + 1}/${cfg.epochs}`, perEpoch, cfg.progress);
  for await (const b of loader.epoch(epoch, k)) {
    s.lr = run.schedule.lrAt(epoch, k, perEpoch);
    const { step, session } = steps.get(b.n)!;
    const batch: StepBatch = {
      x: { dtype: "float32", shape: [b.n, ...model.inputShape], data: b.x },
      y: { dtype: "int64", shape: [b.n], data: b.y },
      lr: s.lr,
      seed: hash32((cfg.seed ^ hash32(state.step)) >>> 0) >>> 0,
    };
    const out = await runTrainStep(session, step, run.weights, run.momentum, batch, cfg.device !== "webgpu");
    const loss = (out.loss.data as Float32Array)[0];
    // A partial batch's mean loss over a few images is noisy: it is checked for NaN/Inf only.
    guardDivergence(loss, b.n === cfg.batchSize ? run.recent : null, state.step, epoch, s.lr, run.last);
    await run.averages?.afterStep(run.weights);
    s.lossSum += loss * b.n;
    s.hits += (out.correct1.data as Float32Array)[0];
    s.seen += b.n;
    s.seenHere += b.n;
    state.step++;
    k++;
    const secs = (performance.now() - te) / 1000;
    bar.update(
      k,
      `loss ${(s.lossSum / s.seen).toFixed(4)} acc ${((100 * s.hits) / s.seen).toFixed(1)}% ${(s.seenHere / secs).toFixed(0)} img/s`,
      ((perEpoch - k) * secs) / k,
    );
    if (cfg.steps !== undefined && state.step >= cfg.steps) {
      s.stopped = true;
      break;
    }
    // Ctrl-C: a checkpoint at the loader's position (after the epoch's last batch too: the resumed run then
    // starts with the epoch's validation), then stop. Otherwise every `every` steps inside an epoch.
    if (sigint.requested || (every !== undefined && k < perEpoch && state.step % every === 0)) {
      assertFinite(run.weights, epoch, s.lr, run.last);
      writeCheckpoint(run, "last", { epoch, batch: k }, { lossSum: s.lossSum, hits: s.hits, seen: s.seen, lr: s.lr });
      if (sigint.requested) {
        bar.done();
        throw interrupted(`at epoch ${epoch + 1}`);
      }
    }
  }
  bar.done();
  return s;
}

/** Validation, the schedule's step, best and last checkpoints, metrics.jsonl and the epoch's log line. */
async function endEpoch(run: Run, epoch: number, s: EpochSums, te: number, log: Log): Promise<void> {
  const { cfg, state, schedule } = run;
  assertFinite(run.weights, epoch, s.lr, run.last);
  const trainSecs = (performance.now() - te) / 1000;
  const val = run.ds.splits.val ? await evalWeights(run.model, run.weights, run.ds.splits.val, run.evalTf, engineOf(cfg)) : null;
  const emaVal = await run.averages?.endEpoch(epoch + 1);
  const acc = val ? val.top1 : s.hits / Math.max(s.seen, 1);
  const cut = schedule.endEpoch(acc);
  state.epoch = epoch + 1;
  state.schedule = schedule.state;
  const improved = acc > state.bestValAcc;
  if (improved) {
    state.bestValAcc = acc;
    state.bestEpoch = epoch + 1;
  }
  const m: EpochMetrics = {
    epoch: epoch + 1,
    step: state.step,
    lr: s.lr,
    trainLoss: s.lossSum / Math.max(s.seen, 1),
    trainTop1: s.hits / Math.max(s.seen, 1),
    val,
    imagesPerSecond: s.seenHere / trainSecs,
    seconds: (performance.now() - te) / 1000,
    ...(emaVal !== undefined ? { emaVal } : {}),
  };
  if (cfg.testEveryEpoch) await testEpoch(run, m);
  run.history.push(m);
  // best before last: last commits the epoch, so a crash between the two redoes the epoch (and its best).
  if (improved) writeCheckpoint(run, "best");
  writeCheckpoint(run, "last");
  writeTextAtomic(run.metricsPath, jsonl(run.history));
  log(
    `epoch ${m.epoch}/${cfg.epochs}  lr ${s.lr.toPrecision(3)}  train loss ${m.trainLoss.toFixed(4)} acc ${(100 * m.trainTop1).toFixed(2)}%` +
      (val ? `  val loss ${val.loss.toFixed(4)} top-1 ${(100 * val.top1).toFixed(2)}% top-5 ${(100 * val.top5).toFixed(2)}%` : "") +
      (emaVal ? `  EMA val top-1 ${(100 * emaVal.top1).toFixed(2)}%` : "") +
      (m.test ? `  test top-1 ${(100 * m.test.top1).toFixed(2)}%` : "") +
      (m.emaTest ? `  EMA test top-1 ${(100 * m.emaTest.top1).toFixed(2)}%` : "") +
      `  ${m.imagesPerSecond.toFixed(0)} img/s  ${fmtTime(m.seconds)}${improved ? "  (best)" : ""}${cut ? `  -> lr ${schedule.state.lr.toPrecision(3)}` : ""}`,
  );
}

/** --test-every-epoch: the test split's scores of the weights and of the EMA after this epoch, into its metrics. */
async function testEpoch(run: Run, m: EpochMetrics): Promise<void> {
  const test = run.ds.splits.test;
  if (!test) return;
  m.test = await evalWeights(run.model, run.weights, test, run.evalTf, engineOf(run.cfg));
  const ema = run.averages?.ema;
  if (ema) m.emaTest = await evalWeights(run.model, ema, test, run.evalTf, engineOf(run.cfg));
}

/** The test split scored once with the best weights (and under --test-protocol), result.json and report.md. */
async function testAndReport(run: Run, t0: number, log: Log): Promise<TrainResult> {
  const { dir, cfg, ds, model, state } = run;
  const bestPath = checkpointPaths(dir, "best").weights;
  let test: Scores | null = null;
  let testProtocol: TrainResult["testProtocol"];
  if (ds.splits.test && existsSync(bestPath)) {
    const best = await loadWeights(model, bestPath);
    test = await evalWeights(model, best, ds.splits.test, run.evalTf, engineOf(cfg));
    log(
      `test (${test.n} images, best epoch ${state.bestEpoch}): top-1 ${(100 * test.top1).toFixed(2)}%  top-5 ${(100 * test.top5).toFixed(2)}%  loss ${test.loss.toFixed(4)}`,
    );
    if (cfg.testProtocol && cfg.testProtocol !== "single")
      testProtocol = await protocolScores(run, cfg.testProtocol, best, ds.splits.test, log);
  }
  const averaged = await testAverages(run, log);
  for (const [name, a] of Object.entries(averaged) as [string, AveragedTest][])
    if (a.test && cfg.testProtocol && cfg.testProtocol !== "single" && ds.splits.test)
      a.testProtocol = await protocolScores(
        run,
        cfg.testProtocol,
        await loadWeights(model, a.weights),
        ds.splits.test,
        log,
        name.toUpperCase(),
      );
  const result: TrainResult = {
    runDir: dir,
    epochs: run.history,
    bestEpoch: state.bestEpoch,
    bestValAcc: state.bestValAcc,
    test,
    ...(testProtocol ? { testProtocol } : {}),
    weights: bestPath,
    seconds: (performance.now() - t0) / 1000,
    initFrom: run.initFrom,
    ...averaged,
  };
  writeTextAtomic(
    join(dir, "result.json"),
    `${JSON.stringify({ ...result, arch: cfg.arch, options: model.options, data: cfg.data }, null, 1)}\n`,
  );
  const setup = describeRun(cfg, ds, model, run.trainTf);
  const title = `${cfg.arch} on ${cfg.data}`;
  const extra = averagedReportLines(averaged, cfg.ema);
  const report = writeReport(dir, title, setup, run.history, test, state.bestEpoch, result.seconds, testProtocol, extra);
  log(`report: ${report}`);
  return result;
}

/** The test split under a protocol, at the scale single-crop evaluation used: as trained (the middle of a jittered range). */
async function protocolScores(
  run: Run,
  protocol: Protocol,
  best: StateDict,
  test: Split,
  log: Log,
  /** Whose weights, when not the best checkpoint's (EMA, SWA). */
  whose = "",
): Promise<TrainResult["testProtocol"]> {
  const S = evalScale(run.evalTf, run.ds.size);
  try {
    const r = await evaluateProtocol(run.model, best, test, protocol, [S], {
      values: { mean: run.evalTf.mean, std: run.evalTf.std, channels: run.evalTf.channels },
      native: run.ds.size,
      ...engineOf(run.cfg),
    });
    const { posteriors: _p, labels: _l, tally: _t, seconds: _s, ...kept } = r;
    log(
      `test, ${r.protocol} protocol at S=${S} (${r.n} images${whose ? `, ${whose}` : ""}): top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}%  loss ${r.loss.toFixed(4)}`,
    );
    return kept;
  } catch (err) {
    // The run and its single-crop score stand; `vgg eval --protocol` can score it again.
    if (!(err instanceof VggError)) throw err;
    log(`test, ${protocol} protocol${whose ? ` (${whose})` : ""}: not scored: ${err.message}`);
    return undefined;
  }
}
