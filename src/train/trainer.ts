/**
 * The training driver: data in worker threads, the whole SGD step as one ONNX graph on ORT, the paper's
 * learning-rate schedule on a held-out validation split, atomic checkpoints, exact resume, divergence guard.
 * The test split is touched once, at the end, with the best checkpoint.
 *
 * Crash safety: the run directory is locked (lock.ts); every file is written atomically (temp file, fsync,
 * rename); checkpoints (every epoch, and every --checkpoint-every steps) carry everything the run's future depends
 * on: weights, momentum, schedule, step, loader position, the epoch's running sums, the divergence guard's window
 * and the metrics history. A run killed at any moment and resumed from its last checkpoint therefore ends with
 * the same weights and metrics as one never interrupted (the data a step sees is a function of (seed, epoch,
 * batch), its dropout of (seed, step)).
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { type Dataset, describeSplits } from "../data/dataset.js";
import { BatchLoader } from "../data/loader.js";
import { checkDataExists, openDataset } from "../data/spec.js";
import { evalScale, presetTransforms, type TransformConfig } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { evaluate } from "../eval/evaluate.js";
import { type Scores, scores } from "../eval/metrics.js";
import { evaluateProtocol, type Protocol } from "../eval/protocols.js";
import { checkMemory, estimateTraining } from "../graph/memory.js";
import { encodeTrainStep, freezeSummary, resolveFreeze, stepFeeds, TRAIN_SESSION_OPTIONS, zeroMomentum } from "../graph/train-step.js";
import { fsError, writeTextAtomic } from "../io/atomic.js";
import { Predictor } from "../predict/predictor.js";
import { forChannels, weightsNormalization } from "../predict/preprocess.js";
import { hash32 } from "../random.js";
import { createSession, type Session } from "../runtime/ort.js";
import type { StateDict } from "../tensor.js";
import { initFromFile } from "../weights/init-from.js";
import { loadWeights } from "../weights/load.js";
import { type ModelMeta, readModelMeta } from "../weights/model-meta.js";
import { fitStart, resolveStart, type Start, startInChannels } from "../weights/start.js";
import { buildModel, type ModelOptions, type VggModel } from "../zoo/model.js";
import { type Checkpoint, checkpointPaths, loadCheckpoint, recoverCheckpoint, saveCheckpoint, type TrainerState } from "./checkpoint.js";
import { acquireRunLock } from "./lock.js";
import { fmtTime, Progress } from "./progress.js";
import { writeReport } from "./report.js";
import { Schedule, type ScheduleKind } from "./schedule.js";

export interface TrainConfig {
  arch: string;
  model: ModelOptions;
  data: string;
  out: string;
  /** Default DEFAULT_EPOCHS; on --resume, the run's own unless given again. */
  epochs?: number;
  batchSize: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
  decayExempt: "none" | "bn_and_bias";
  labelSmoothing: number;
  schedule: ScheduleKind;
  patience: number;
  warmup?: number;
  /** A weights file, or an init scheme name. */
  init: string;
  /** A trained net A: its first four convs and its FC layers replace those of the fresh init (the paper's rule). */
  initFrom?: string;
  /** Fine-tuning: everything up to and including this tap (or `features`) is frozen. */
  freeze?: string;
  seed: number;
  /** Stop after this many steps in all (smoke runs). */
  steps?: number;
  shuffle: boolean;
  flip: boolean;
  /** Random-crop padding for small fixed-size images; 0 is --augment without crop: no random crop at any scale. */
  cropPadding?: number;
  lighting?: number;
  /** Random erasing probability (torchvision's RandomErasing). */
  erase?: number;
  /** Training scale S (fixed) or [Smin, Smax] (jittered), for variable-size images. */
  scale?: number | [number, number];
  fit: "pad" | "resize";
  /**
   * torchvision's RandomResizedCrop for training (fine-tuning at 224 on photos), instead of scale + crop. "auto" (the
   * fine-tuning default on folder data): for photos of varying size; images of one size take crop,flip.
   */
  resizedCrop?: boolean | "auto";
  /** Default: the starting weights' normalisation when they have one (fine-tuning), else "meanstd". */
  normalize?: "meanstd" | "mean" | "none";
  /** Set by the trainer: which folder-data convention the run's splits follow (FOLDER_LAYOUT), for --resume. */
  folderLayout?: number;
  /** Set by the trainer from the starting weights (fine-tuning): a fixed mean/std instead of the data's. */
  normalizeTo?: { mean: number[]; std: number[]; from: string };
  /** Held-out validation images (count or fraction). */
  val?: number;
  workers?: number;
  threads?: number;
  resume: boolean;
  progress: boolean;
  /**
   * Also checkpoint (last.safetensors and its optimizer state, with the loader's position) every this many
   * steps inside an epoch, so a crash loses at most that many steps; epoch ends are always checkpointed.
   */
  checkpointEvery?: number;
  /**
   * The test split is always scored single-crop; a protocol here (e.g. the paper's "dense": the image and its
   * flip, posteriors averaged) scores it once more, at the training scale, and both are reported.
   */
  testProtocol?: Protocol;
  /**
   * Drop the epoch's last, partial batch (PyTorch's drop_last). Off by default: that batch runs through a second
   * step graph built for its size. Runs saved before this option existed dropped it, and still do on resume.
   */
  dropLast?: boolean;
}

export interface EpochMetrics {
  epoch: number;
  step: number;
  lr: number;
  trainLoss: number;
  trainTop1: number;
  val: Scores | null;
  imagesPerSecond: number;
  seconds: number;
}

export interface TrainResult {
  runDir: string;
  epochs: EpochMetrics[];
  bestEpoch: number;
  bestValAcc: number;
  test: Scores | null;
  /** The test split under cfg.testProtocol (absent when single). */
  testProtocol?: Scores & { protocol: Protocol; scales: number[] };
  weights: string;
  seconds: number;
  /** What --init-from copied (absent without it, or on resume). */
  initFrom?: string;
}

type Log = (line: string) => void;

/** The args a run is resumed with are the ones it started with; these may change on resume. */
const RESUMABLE_OVERRIDES = new Set([
  "epochs",
  "steps",
  "progress",
  "workers",
  "threads",
  "resume",
  "out",
  "checkpointEvery",
  "testProtocol",
]);
/** Overrides that keep the saved value unless given again. */
const STICKY = new Set(["epochs", "checkpointEvery", "testProtocol"]);
export const DEFAULT_EPOCHS = 30;
/** 2: folder data's val/ is the validation split and test/ the test split (before: val/ was the test split). */
const FOLDER_LAYOUT = 2;
/** A run's settings once the defaults and, on resume, the saved args are applied. */
type RunConfig = TrainConfig & { epochs: number };

/**
 * Thrown when Ctrl-C (SIGINT) or SIGTERM stopped a run after it wrote a checkpoint; `resume` is the command that
 * continues it. The CLI prints the message and exits with `exitCode` (130 or 143, as a shell reports the signal).
 */
export class TrainInterrupted extends VggError {
  constructor(
    message: string,
    readonly resume: string,
    exitCode = 130,
  ) {
    super(message, undefined, exitCode);
    this.name = "TrainInterrupted";
  }
}

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
  // Ctrl-C, and SIGTERM (kill, docker stop, systemd): finish the step, checkpoint, exit as the signal's 128 + n.
  const sigint: Stop = {
    requested: false,
    exitCode: 130,
    detach: () => {
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
    },
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const code = signal === "SIGTERM" ? 143 : 130;
    if (sigint.requested) {
      process.stderr.write(`vgg: ${signal} again: exiting without a new checkpoint\n`);
      process.exit(code);
    }
    sigint.requested = true;
    sigint.exitCode = code;
    log(
      signal === "SIGTERM"
        ? "SIGTERM: stopping after the current step to write a checkpoint"
        : "interrupt: stopping after the current step to write a checkpoint (Ctrl-C again to stop at once)",
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
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

/** A stop asked for by a signal, and the exit code the CLI then uses. */
interface Stop {
  requested: boolean;
  exitCode: number;
  /** Gives the signals back to their default handling. */
  detach: () => void;
}

async function trainLocked(cfgIn: TrainConfig, log: Log, t0: number, sigint: Stop): Promise<TrainResult> {
  let cfg: RunConfig;
  const dir = cfgIn.out;
  const lastPaths = checkpointPaths(dir, "last");
  const metricsPath = join(dir, "metrics.jsonl");
  // Under the lock: finish or drop a checkpoint a crash interrupted, remove temp files of interrupted writes.
  for (const line of recoverCheckpoint(dir, "last")) log(`${dir}: ${line}`);
  let ckpt: Checkpoint | undefined;
  if (cfgIn.resume) {
    ckpt = loadCheckpoint(dir, "last");
    const saved = ckpt.state.args as unknown as RunConfig;
    // --epochs, --checkpoint-every and --test-protocol carry over unless given again; the other overrides are per
    // invocation.
    const overrides = Object.entries(cfgIn).filter(([k, v]) => RESUMABLE_OVERRIDES.has(k) && !(STICKY.has(k) && v === undefined));
    cfg = { ...saved, ...Object.fromEntries(overrides) } as RunConfig;
    // Folder runs started before val/ became the validation split (and test/ the test split) would resume on other
    // splits and statistics: refused rather than silently changed.
    if (/^folder:/i.test(cfg.data) && cfg.folderLayout !== FOLDER_LAYOUT)
      throw new VggError(
        "this folder run was started when val/ was its test split; resuming now would train and validate on other images: start a new run",
        dir,
      );
    const pos = ckpt.state.position;
    log(
      pos && pos.epoch === ckpt.state.epoch
        ? `resuming ${dir} in epoch ${pos.epoch + 1} after batch ${pos.batch} (step ${ckpt.state.step})`
        : `resuming ${dir} after epoch ${ckpt.state.epoch} (step ${ckpt.state.step})`,
    );
  } else if (existsSync(lastPaths.weights)) {
    throw new VggError("already holds a run: pass --resume to continue it, or choose another --out", dir);
  } else {
    // dropLast is saved with the run, so that its resume runs the same batches.
    cfg = { ...cfgIn, epochs: cfgIn.epochs ?? DEFAULT_EPOCHS, dropLast: cfgIn.dropLast ?? false, folderLayout: FOLDER_LAYOUT };
  }

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

  let weights: StateDict;
  let momentum: StateDict;
  let initFromSummary: string | undefined;
  let state: TrainerState;
  const schedule = new Schedule(
    { kind: cfg.schedule, lr: cfg.lr, epochs: cfg.epochs, patience: cfg.patience, warmup: cfg.warmup },
    ckpt?.state.schedule,
  );
  // With freeze: a frozen layer gets no momentum buffer (zeroMomentum) and no update (the step graph).
  const sgd = { momentum: cfg.momentum, weightDecay: cfg.weightDecay, nesterov: cfg.nesterov, decayExempt: cfg.decayExempt, freeze };
  if (ckpt) {
    weights = ckpt.weights;
    momentum = ckpt.momentum;
    state = ckpt.state;
  } else {
    const fit = fitStart(model, start as Start, cfg.seed);
    weights = fit.weights;
    if (fit.summary) log(`${cfg.init}: ${fit.summary}`);
    if (cfg.initFrom) {
      const r = await initFromFile(model, weights, cfg.initFrom);
      weights = r.weights;
      initFromSummary = r.summary;
      log(`${cfg.initFrom}: ${r.summary}`);
    }
    momentum = zeroMomentum(model, sgd);
    state = { epoch: 0, step: 0, schedule: schedule.state, bestValAcc: -1, bestEpoch: -1, args: { ...cfg } as Record<string, unknown> };
    log(describeRun(cfg, ds, model, trainTf));
  }
  // The checkpoint is the record: metrics.jsonl holds exactly its completed epochs (a crashed run may have written
  // a line the checkpoint does not cover; the resumed run writes it again). Checkpoints from before the history
  // was kept in them fall back to the file's own lines up to the checkpoint's epoch.
  const history: EpochMetrics[] = state.history
    ? state.history.slice(0, state.epoch)
    : readHistory(metricsPath).filter((e) => e.epoch <= state.epoch);
  writeTextAtomic(metricsPath, jsonl(history));
  const recent: number[] = state.recent ? [...state.recent] : [];

  const nTrain = ds.splits.train.indices.length;
  const dropLast = dropsLastBatch(cfg, model, nTrain);
  // The graph's batch is fixed: a partial last batch gets a graph of its own. Both are built (and their memory
  // counted) before the first step, so that a run which cannot hold them fails now, not an epoch in.
  const sizes = [...new Set([nTrain >= cfg.batchSize ? cfg.batchSize : 0, dropLast ? 0 : nTrain % cfg.batchSize])].filter((n) => n > 0);
  if (sizes.length === 0)
    throw new VggError(
      `the training split has ${nTrain} images, fewer than one batch of ${cfg.batchSize} (and --drop-last drops it)`,
      cfg.data,
    );
  const estimates = sizes.map((n) => estimateTraining(model, n, freeze));
  const shared = estimates[0].parts.runtime + estimates[0].parts.weights;
  checkMemory(
    `training ${cfg.arch} at batch ${sizes[0]}, input ${inputSize}${sizes.length > 1 ? ` (and a last batch of ${sizes[1]})` : ""}`,
    { total: estimates.reduce((t, e) => t + e.total - shared, shared), parts: estimates[0].parts },
    "lower --batch-size or --input-size, or raise --width-divisor",
  );
  const steps = new Map<number, { step: Omit<ReturnType<typeof encodeTrainStep>, "bytes">; session: Session }>();
  for (const n of sizes) {
    // Frozen tensors are baked in as constants (ORT prepacks them); `weights` keeps them, unchanged, for checkpoints.
    const frozenWeights = freeze > 0 ? weights : undefined;
    const { bytes, ...step } = encodeTrainStep(model, { ...sgd, batchSize: n, labelSmoothing: cfg.labelSmoothing, frozenWeights });
    // The bytes (with frozen weights, as large as they are) are not kept past the session's creation.
    steps.set(n, { step, session: await createSession(bytes, { ...TRAIN_SESSION_OPTIONS, threads: cfg.threads }) });
  }
  const loader = new BatchLoader(ds.splits.train, {
    batchSize: cfg.batchSize,
    shuffle: cfg.shuffle,
    dropLast,
    transforms: trainTf,
    seed: cfg.seed,
    workers: cfg.workers,
  });
  const perEpoch = loader.batchesPerEpoch;
  const every = cfg.checkpointEvery;
  let stopped = false;

  /** Writes last (and best) with the state as it is; a failed write says the previous checkpoint is kept. */
  const checkpoint = (name: "last" | "best", position?: TrainerState["position"], partial?: TrainerState["partial"]) => {
    state.history = history;
    state.recent = recent;
    state.position = position;
    state.partial = partial;
    try {
      if (name === "last") saveCheckpoint(dir, "last", weights, meta, momentum, state);
      else saveCheckpoint(dir, "best", weights, meta);
    } catch (err) {
      const e = err instanceof VggError ? err : fsError(dir, err, "write");
      const kept = existsSync(checkpointPaths(dir, name).weights) ? "the previous checkpoint is kept" : "no checkpoint was written yet";
      throw new VggError(
        `${e.file ? e.message.slice(e.file.length + 2) : e.message}; checkpoint of step ${state.step} not written, ${kept}`,
        e.file,
      );
    }
  };
  const assertFinite = (epoch: number, lr: number) => {
    // A finite loss can hide a blown-up BN statistic or weight; never checkpoint one.
    const bad = firstNonFinite(weights);
    if (!bad) return;
    const kept = existsSync(lastPaths.weights) ? `the last good checkpoint ${lastPaths.weights} is kept` : "no checkpoint was written yet";
    throw new VggError(
      `training diverged in epoch ${epoch + 1}: '${bad}' holds NaN or Inf with learning rate ${lr.toPrecision(3)}; ${kept}; try a lower --lr`,
    );
  };
  const interrupted = (where: string) => {
    const hint = resumeHint(cfg);
    return new TrainInterrupted(
      `interrupted ${where} step ${state.step} (checkpoint written in ${dir}): resume with ${hint}`,
      hint,
      sigint.exitCode,
    );
  };

  try {
    for (let epoch = state.epoch; epoch < cfg.epochs && !stopped; epoch++) {
      const te = performance.now();
      // A checkpoint taken inside this epoch: continue at its batch with the epoch's sums so far.
      const at = state.position?.epoch === epoch ? state.position : undefined;
      const part = at ? state.partial : undefined;
      let lossSum = part?.lossSum ?? 0;
      let hits = part?.hits ?? 0;
      let seen = part?.seen ?? 0;
      let lr = part?.lr ?? 0;
      let seenHere = 0;
      let k = at?.batch ?? 0;
      const bar = new Progress(`epoch ${epoch + 1}/${cfg.epochs}`, perEpoch, cfg.progress);
      for await (const b of loader.epoch(epoch, k)) {
        lr = schedule.lrAt(epoch, k, perEpoch);
        const { step, session } = steps.get(b.n)!;
        const feeds = stepFeeds(step, weights, momentum, {
          x: { dtype: "float32", shape: [b.n, ...model.inputShape], data: b.x },
          y: { dtype: "int64", shape: [b.n], data: b.y },
          lr,
          seed: hash32((cfg.seed ^ hash32(state.step)) >>> 0) >>> 0,
        });
        const out = await session.run(feeds);
        const loss = (out.loss.data as Float32Array)[0];
        // A partial batch's mean loss over a few images is noisy: it is checked for NaN/Inf only.
        guardDivergence(loss, b.n === cfg.batchSize ? recent : null, state.step, epoch, lr, lastPaths.weights);
        for (const e of step.state) (e.kind === "momentum" ? momentum : weights).set(e.input, out[e.output]);
        lossSum += loss * b.n;
        hits += (out.correct1.data as Float32Array)[0];
        seen += b.n;
        seenHere += b.n;
        state.step++;
        k++;
        const secs = (performance.now() - te) / 1000;
        bar.update(
          k,
          `loss ${(lossSum / seen).toFixed(4)} acc ${((100 * hits) / seen).toFixed(1)}% ${(seenHere / secs).toFixed(0)} img/s`,
          ((perEpoch - k) * secs) / k,
        );
        if (cfg.steps !== undefined && state.step >= cfg.steps) {
          stopped = true;
          break;
        }
        // Ctrl-C: a checkpoint at the loader's position (after the epoch's last batch too: the resumed run then
        // starts with the epoch's validation), then stop. Otherwise every `every` steps inside an epoch.
        if (sigint.requested || (every !== undefined && k < perEpoch && state.step % every === 0)) {
          assertFinite(epoch, lr);
          checkpoint("last", { epoch, batch: k }, { lossSum, hits, seen, lr });
          if (sigint.requested) {
            bar.done();
            throw interrupted(`at epoch ${epoch + 1}`);
          }
        }
      }
      bar.done();
      assertFinite(epoch, lr);
      const trainSecs = (performance.now() - te) / 1000;
      const val = ds.splits.val ? await evalWeights(model, weights, ds.splits.val, evalTf, cfg.threads) : null;
      const acc = val ? val.top1 : hits / Math.max(seen, 1);
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
        lr,
        trainLoss: lossSum / Math.max(seen, 1),
        trainTop1: hits / Math.max(seen, 1),
        val,
        imagesPerSecond: seenHere / trainSecs,
        seconds: (performance.now() - te) / 1000,
      };
      history.push(m);
      // best before last: last commits the epoch, so a crash between the two redoes the epoch (and its best).
      if (improved) checkpoint("best");
      checkpoint("last");
      writeTextAtomic(metricsPath, jsonl(history));
      log(
        `epoch ${m.epoch}/${cfg.epochs}  lr ${lr.toPrecision(3)}  train loss ${m.trainLoss.toFixed(4)} acc ${(100 * m.trainTop1).toFixed(2)}%` +
          (val ? `  val loss ${val.loss.toFixed(4)} top-1 ${(100 * val.top1).toFixed(2)}% top-5 ${(100 * val.top5).toFixed(2)}%` : "") +
          `  ${m.imagesPerSecond.toFixed(0)} img/s  ${fmtTime(m.seconds)}${improved ? "  (best)" : ""}${cut ? `  -> lr ${schedule.state.lr.toPrecision(3)}` : ""}`,
      );
      if (sigint.requested && state.epoch < cfg.epochs && !stopped) throw interrupted(`after epoch ${epoch + 1}`);
    }
  } finally {
    await loader.close();
    for (const { session } of steps.values()) await session.release();
  }
  // Training is over and checkpointed: from here a signal ends the process as usual (a resume redoes the test).
  sigint.detach();

  const bestPath = checkpointPaths(dir, "best").weights;
  let test: Scores | null = null;
  let testProtocol: TrainResult["testProtocol"];
  if (ds.splits.test && existsSync(bestPath)) {
    const best = await loadWeights(model, bestPath);
    test = await evalWeights(model, best, ds.splits.test, evalTf, cfg.threads);
    log(
      `test (${test.n} images, best epoch ${state.bestEpoch}): top-1 ${(100 * test.top1).toFixed(2)}%  top-5 ${(100 * test.top5).toFixed(2)}%  loss ${test.loss.toFixed(4)}`,
    );
    if (cfg.testProtocol && cfg.testProtocol !== "single") {
      // At the scale single-crop evaluation used: as trained (the middle of a jittered range).
      const S = evalScale(evalTf, ds.size);
      try {
        const r = await evaluateProtocol(model, best, ds.splits.test, cfg.testProtocol, [S], {
          values: { mean: evalTf.mean, std: evalTf.std, channels: evalTf.channels },
          native: ds.size,
          threads: cfg.threads,
        });
        const { posteriors: _p, labels: _l, tally: _t, seconds: _s, ...kept } = r;
        testProtocol = kept;
        log(
          `test, ${r.protocol} protocol at S=${S} (${r.n} images): top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}%  loss ${r.loss.toFixed(4)}`,
        );
      } catch (err) {
        // The run and its single-crop score stand; `vgg eval --protocol` can score it again.
        if (!(err instanceof VggError)) throw err;
        log(`test, ${cfg.testProtocol} protocol: not scored: ${err.message}`);
      }
    }
  }
  const result: TrainResult = {
    runDir: dir,
    epochs: history,
    bestEpoch: state.bestEpoch,
    bestValAcc: state.bestValAcc,
    test,
    ...(testProtocol ? { testProtocol } : {}),
    weights: bestPath,
    seconds: (performance.now() - t0) / 1000,
    initFrom: initFromSummary,
  };
  writeTextAtomic(
    join(dir, "result.json"),
    `${JSON.stringify({ ...result, arch: cfg.arch, options: model.options, data: cfg.data }, null, 1)}\n`,
  );
  const report = writeReport(
    dir,
    `${cfg.arch} on ${cfg.data}`,
    describeRun(cfg, ds, model, trainTf),
    history,
    test,
    state.bestEpoch,
    result.seconds,
    testProtocol,
  );
  log(`report: ${report}`);
  return result;
}

function jsonl(history: EpochMetrics[]): string {
  return history.map((e) => `${JSON.stringify(e)}\n`).join("");
}

/** The command that resumes the run: the saved flags come from the checkpoint, these are per invocation. */
function resumeHint(cfg: RunConfig): string {
  const q = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);
  const parts = ["vgg", "train", "--out", q(cfg.out), "--resume", "--epochs", String(cfg.epochs)];
  if (cfg.steps !== undefined) parts.push("--steps", String(cfg.steps));
  if (cfg.threads !== undefined) parts.push("--threads", String(cfg.threads));
  if (cfg.workers !== undefined) parts.push("--workers", String(cfg.workers));
  return parts.join(" ");
}

/**
 * Starting from weights: the model takes the weights' input channels (1-channel data is replicated) and, unless
 * --normalize says otherwise, their normalisation: a `vgg train` checkpoint's own, a published entry's, and
 * torchvision's ImageNet statistics for any other 3-channel file (torchvision's convention).
 */
function withStartDefaults(cfg: RunConfig, start: Start): RunConfig {
  if (!("path" in start)) return cfg;
  const inChannels = cfg.model.inChannels ?? startInChannels(start);
  const out: RunConfig = { ...cfg, model: { ...cfg.model, inChannels } };
  if (cfg.normalize !== undefined) return out;
  const meta = start.path.endsWith(".safetensors") ? readModelMeta(start.path) : undefined;
  if (meta) {
    if (meta.mean.length > 0) out.normalizeTo = { mean: meta.mean, std: meta.std, from: "the checkpoint's" };
    return out;
  }
  const n = weightsNormalization(start.path, inChannels ?? 3);
  if (n) out.normalizeTo = n;
  return out;
}

export async function evalWeights(
  model: VggModel,
  weights: StateDict,
  split: NonNullable<Dataset["splits"]["val"]>,
  tf: TransformConfig,
  threads?: number,
): Promise<Scores> {
  const p = await Predictor.fromWeights(model, weights, { threads });
  try {
    return scores(await evaluate(p, split, tf));
  } finally {
    await p.release();
  }
}

function guardDivergence(loss: number, recent: number[] | null, step: number, epoch: number, lr: number, last: string): void {
  const sorted = [...(recent ?? [])].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1];
  const exploding = recent !== null && recent.length >= 20 && loss > 10 * median && loss > 5;
  if (!Number.isFinite(loss) || exploding) {
    const kept = existsSync(last) ? `the last good checkpoint ${last} is kept` : "no checkpoint was written yet";
    throw new VggError(
      `training diverged at step ${step + 1} (epoch ${epoch + 1}): loss ${loss} with learning rate ${lr.toPrecision(3)}${exploding ? ` (running median ${median.toFixed(4)})` : ""}; ${kept}; try a lower --lr`,
    );
  }
  if (!recent) return;
  recent.push(loss);
  if (recent.length > 50) recent.shift();
}

function firstNonFinite(sd: StateDict): string | undefined {
  for (const [k, t] of sd) {
    if (t.dtype !== "float32") continue;
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return k;
  }
  return undefined;
}

function readHistory(path: string): EpochMetrics[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as EpochMetrics];
      } catch {
        return [];
      }
    });
}

/**
 * Whether the epoch's last, partial batch is skipped. Runs saved before dropLast was an option dropped it: their
 * resumes keep doing so. A last batch of one image has no batch variance to normalise with (PyTorch refuses it at
 * 1x1 maps): dropped too when the net has BN.
 */
function dropsLastBatch(cfg: TrainConfig, model: VggModel, nTrain: number): boolean {
  const bn = model.layers.some((l) => l.kind === "batchnorm");
  return (cfg.dropLast ?? true) || (bn && nTrain % cfg.batchSize === 1 && nTrain > 1);
}

const fmtList = (v: number[]) => v.map((x) => x.toFixed(3)).join("/");

function describeRun(cfg: RunConfig, ds: Dataset, model: VggModel, tf: TransformConfig): string {
  const s = ds.splits;
  const n = (x: { indices: Int32Array } | null) => (x ? x.indices.length : 0);
  const rest = n(s.train) % cfg.batchSize;
  const dropped =
    rest === 0 || !dropsLastBatch(cfg, model, n(s.train))
      ? ""
      : ` (last batch of ${rest} dropped${cfg.dropLast === false ? ": batch norm needs 2 or more images" : ""})`;
  return [
    `${cfg.arch}: ${model.options.head} head, width /${model.options.widthDivisor}, input ${model.inputShape.join("x")}, ${model.options.numClasses} classes`,
    `data ${cfg.data}: ${describeSplits(ds)}`,
    `SGD lr ${cfg.lr} momentum ${cfg.momentum} weight decay ${cfg.weightDecay}${cfg.nesterov ? " nesterov" : ""}, batch ${cfg.batchSize}${dropped}, ${cfg.epochs} epochs, schedule ${cfg.schedule}, init ${cfg.init}, seed ${cfg.seed}`,
    `augmentation ${JSON.stringify({ ...tf, mean: undefined, std: undefined })}`,
    `normalisation ${cfg.normalizeTo ? `${cfg.normalizeTo.from} mean/std` : (cfg.normalize ?? "meanstd")}${tf.mean ? ` (mean ${fmtList(tf.mean)}, std ${fmtList(tf.std ?? [])})` : ""}`,
    ...(cfg.freeze ? [freezeSummary(model, cfg.freeze, resolveFreeze(model, cfg.freeze))] : []),
  ].join("\n");
}
