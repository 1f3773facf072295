/**
 * What a user says to train (the CLI's flags, the library's `train({...})`) and the one place its defaults live:
 * both go through trainConfig(), so `vgg train` and `train()` cannot drift apart.
 */
import { VggError } from "../errors.js";
import type { Protocol } from "../eval/protocols.js";
import { weightsNormalization } from "../predict/preprocess.js";
import type { DeviceChoice } from "../runtime/device.js";
import { INIT_SCHEMES } from "../weights/init.js";
import { readModelMeta } from "../weights/model-meta.js";
import { type Start, startInChannels } from "../weights/start.js";
import type { ModelFlagOptions, ModelOptions, VggModel } from "../zoo/model.js";
import type { ScheduleKind } from "./schedule.js";
import type { RunConfig, TrainConfig } from "./types.js";

export const AUGMENTS = ["crop", "flip", "lighting", "erase", "resized-crop"] as const;
export type Augment = (typeof AUGMENTS)[number];

export interface TrainOptions extends ModelFlagOptions {
  arch?: string;
  /** Data spec: fashion-mnist[:DIR], cifar10:DIR, folder:DIR, npy:X.npy,Y.npy[;XT.npy,YT.npy]. */
  data?: string;
  /** Run directory (default runs/<arch>-<time>). */
  out?: string;
  /** A custom feature config: "64,M,128,M,conv1-128,M" or its list. */
  config?: string | (number | string)[];
  epochs?: number;
  batchSize?: number;
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
  /** false: no weight decay on BN parameters and biases. */
  decayBnBias?: boolean;
  labelSmoothing?: number;
  schedule?: ScheduleKind;
  patience?: number;
  warmup?: number;
  /** torchvision|paper|glorot, or weights to start from: a file, `imagenet`, an entry name, a URL. */
  init?: string;
  initFrom?: string;
  /** Freeze everything up to and including a tap (relu4_3, pool5, fc6), or `features`. */
  freeze?: string;
  seed?: number;
  steps?: number;
  shuffle?: boolean;
  dropLast?: boolean;
  /** "crop,flip" (default; "resized-crop,flip" when fine-tuning weights on folder: data), "none", or a list of AUGMENTS. */
  augment?: string | Augment[];
  /** Training scale: S, [Smin, Smax], or "S" / "Smin:Smax". */
  scale?: number | [number, number] | string;
  fit?: "pad" | "resize";
  /** Default: the starting weights' normalisation when fine-tuning, else the data's mean/std. */
  normalize?: "meanstd" | "mean" | "none";
  val?: number;
  workers?: number;
  threads?: number;
  /** Where ORT runs the steps and evaluations: cpu (default), webgpu, or auto (webgpu when an adapter exists). */
  device?: DeviceChoice;
  resume?: boolean;
  progress?: boolean;
  checkpointEvery?: number;
  testProtocol?: Protocol;
  /** Also score the test split after every epoch, for the curve and the time to accuracy; it chooses nothing. */
  testEveryEpoch?: boolean;
  /** Keep an exponential moving average of the weights and BN statistics with this decay (e.g. 0.999; default off). */
  ema?: number;
  /** Average the weights at the end of epochs swaStart..epochs (SWA; 1-based; default off). */
  swaStart?: number;
}

/** The defaults of `vgg train` and `train()`. */
export const TRAIN_DEFAULTS = {
  batchSize: 128,
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 5e-4,
  labelSmoothing: 0,
  schedule: "plateau" as ScheduleKind,
  patience: 2,
  init: "torchvision",
  seed: 0,
  augment: "crop,flip",
  fit: "pad" as const,
} as const;

export function parseAugment(s: string | readonly string[]): Set<Augment> {
  const parts = (typeof s === "string" ? s.split(",") : [...s]).map((p) => p.trim()).filter(Boolean);
  const known: string[] = [...AUGMENTS, "none"];
  for (const p of parts) if (!known.includes(p)) throw new VggError(`--augment: unknown '${p}' (known: ${known.join(", ")})`);
  if (parts.includes("resized-crop") && parts.includes("crop"))
    throw new VggError("--augment: crop and resized-crop are two ways to crop; choose one");
  return new Set(parts.filter((p) => p !== "none") as Augment[]);
}

export function parseScale(s: TrainOptions["scale"]): number | [number, number] | undefined {
  if (s === undefined || typeof s === "number" || Array.isArray(s)) return s;
  const m = /^(\d+)(?::(\d+))?$/.exec(s.trim());
  if (!m) throw new VggError(`--scale wants S or Smin:Smax, got '${s}'`);
  return m[2] ? [Number(m[1]), Number(m[2])] : Number(m[1]);
}

export function parseConfig(c: TrainOptions["config"]): ModelOptions["config"] {
  if (c === undefined) return undefined;
  const list = typeof c === "string" ? c.split(",") : c;
  return list.map((s) => (typeof s === "number" ? s : /^\d+$/.test(s.trim()) ? Number(s) : s.trim()));
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

/** The trainer's full configuration from what the user gave, defaults filled in. */
export function trainConfig(o: TrainOptions): TrainConfig {
  const d = TRAIN_DEFAULTS;
  const init = o.init ?? d.init;
  // Fine-tuning pretrained weights on photos: torchvision's recipe (RandomResizedCrop + flip) unless told otherwise.
  const fineTunePhotos = !(INIT_SCHEMES as string[]).includes(init) && /^folder:/i.test(o.data ?? "");
  const aug = parseAugment(o.augment ?? (fineTunePhotos ? "resized-crop,flip" : d.augment));
  if (!o.resume) {
    if (o.arch === undefined) throw new VggError("required option '--arch <name>' not specified");
    if (o.data === undefined) throw new VggError("required option '--data <spec>' not specified");
  }
  return {
    arch: o.arch ?? "",
    model: {
      numClasses: o.numClasses,
      inChannels: o.inChannels,
      dropout: o.dropout,
      head: o.head,
      widthDivisor: o.widthDivisor,
      inputSize: o.inputSize,
      config: parseConfig(o.config),
    },
    data: o.data ?? "",
    out: o.out ?? `runs/${o.arch ?? "run"}-${stamp()}`,
    epochs: o.epochs,
    batchSize: o.batchSize ?? d.batchSize,
    lr: o.lr ?? d.lr,
    momentum: o.momentum ?? d.momentum,
    weightDecay: o.weightDecay ?? d.weightDecay,
    nesterov: Boolean(o.nesterov),
    decayExempt: o.decayBnBias === false ? "bn_and_bias" : "none",
    labelSmoothing: o.labelSmoothing ?? d.labelSmoothing,
    schedule: o.schedule ?? d.schedule,
    patience: o.patience ?? d.patience,
    warmup: o.warmup,
    init,
    initFrom: o.initFrom,
    freeze: o.freeze,
    seed: o.seed ?? d.seed,
    steps: o.steps,
    shuffle: o.shuffle ?? true,
    flip: aug.has("flip"),
    cropPadding: aug.has("crop") ? undefined : 0,
    // Defaulted for fine-tuning on folder data: the trainer keeps it for photos only (images of one small size are
    // padded at evaluation, so they train with the random crop of small images instead).
    resizedCrop: o.augment === undefined && fineTunePhotos ? "auto" : aug.has("resized-crop") || undefined,
    lighting: aug.has("lighting") ? 0.1 : 0,
    erase: aug.has("erase") ? 0.5 : 0,
    scale: parseScale(o.scale),
    fit: o.fit ?? d.fit,
    normalize: o.normalize,
    val: o.val,
    workers: o.workers,
    threads: o.threads,
    device: o.device,
    resume: Boolean(o.resume),
    progress: o.progress ?? false,
    checkpointEvery: o.checkpointEvery,
    testProtocol: o.testProtocol,
    testEveryEpoch: o.testEveryEpoch,
    dropLast: Boolean(o.dropLast),
    ema: checkEma(o.ema),
    // A resumed run's --epochs may come from its checkpoint: resumedConfig checks it then.
    swaStart: o.resume ? o.swaStart : checkSwaStart(o.swaStart, o.epochs ?? DEFAULT_EPOCHS),
  };
}

/** --ema: a decay strictly between 0 and 1 (1 would never move, 0 would be the raw weights). */
function checkEma(decay: number | undefined): number | undefined {
  if (decay !== undefined && !(decay > 0 && decay < 1))
    throw new VggError(`--ema ${decay}: want a decay between 0 and 1 (exclusive), e.g. 0.999`);
  return decay;
}

/** --swa-start: an epoch (1-based) that the run reaches, so that at least one epoch's weights are averaged. */
function checkSwaStart(start: number | undefined, epochs: number): number | undefined {
  if (start === undefined) return undefined;
  if (!(Number.isInteger(start) && start >= 1)) throw new VggError(`--swa-start ${start}: want an epoch number, 1 or more`);
  if (start > epochs)
    throw new VggError(`--swa-start ${start} is beyond --epochs ${epochs}: no epoch's weights would be averaged (epochs are 1..${epochs})`);
  return start;
}

/** The args a run is resumed with are the ones it started with; these may change on resume. */
const RESUMABLE_OVERRIDES = new Set([
  "epochs",
  "steps",
  "progress",
  "workers",
  "threads",
  "device",
  "resume",
  "out",
  "checkpointEvery",
  "testProtocol",
  "testEveryEpoch",
]);
/** Overrides that keep the saved value unless given again. */
const STICKY = new Set(["epochs", "checkpointEvery", "testProtocol", "testEveryEpoch"]);
export const DEFAULT_EPOCHS = 30;
/** 2: folder data's val/ is the validation split and test/ the test split (before: val/ was the test split). */
const FOLDER_LAYOUT = 2;

/**
 * A resumed run's settings: the args it started with (saved in its checkpoint) and this invocation's overrides.
 * --epochs, --checkpoint-every, --test-protocol and --test-every-epoch carry over unless given again; the other overrides are per
 * invocation.
 */
export function resumedConfig(cfgIn: TrainConfig, saved: RunConfig, dir: string): RunConfig {
  const overrides = Object.entries(cfgIn).filter(([k, v]) => RESUMABLE_OVERRIDES.has(k) && !(STICKY.has(k) && v === undefined));
  const cfg = { ...saved, ...Object.fromEntries(overrides) } as RunConfig;
  checkSwaStart(cfg.swaStart, cfg.epochs);
  // Folder runs started before val/ became the validation split (and test/ the test split) would resume on other
  // splits and statistics: refused rather than silently changed.
  if (/^folder:/i.test(cfg.data) && cfg.folderLayout !== FOLDER_LAYOUT)
    throw new VggError(
      "this folder run was started when val/ was its test split; resuming now would train and validate on other images: start a new run",
      dir,
    );
  return cfg;
}

/** A new run's settings. dropLast and the folder layout are saved with the run, so that its resume runs the same batches. */
export function newRunConfig(cfgIn: TrainConfig): RunConfig {
  return { ...cfgIn, epochs: cfgIn.epochs ?? DEFAULT_EPOCHS, dropLast: cfgIn.dropLast ?? false, folderLayout: FOLDER_LAYOUT };
}

/** The command that resumes the run: the saved flags come from the checkpoint, these are per invocation. */
export function resumeHint(cfg: RunConfig): string {
  const q = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);
  const parts = ["vgg", "train", "--out", q(cfg.out), "--resume", "--epochs", String(cfg.epochs)];
  if (cfg.steps !== undefined) parts.push("--steps", String(cfg.steps));
  if (cfg.threads !== undefined) parts.push("--threads", String(cfg.threads));
  if (cfg.device !== undefined && cfg.device !== "cpu") parts.push("--device", cfg.device);
  if (cfg.workers !== undefined) parts.push("--workers", String(cfg.workers));
  return parts.join(" ");
}

/**
 * Starting from weights: the model takes the weights' input channels (1-channel data is replicated) and, unless
 * --normalize says otherwise, their normalisation: a `vgg train` checkpoint's own, a published entry's, and
 * torchvision's ImageNet statistics for any other 3-channel file (torchvision's convention).
 */
export function withStartDefaults(cfg: RunConfig, start: Start): RunConfig {
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

/**
 * Whether the epoch's last, partial batch is skipped. Runs saved before dropLast was an option dropped it: their
 * resumes keep doing so. A last batch of one image has no batch variance to normalise with (PyTorch refuses it at
 * 1x1 maps): dropped too when the net has BN.
 */
export function dropsLastBatch(cfg: TrainConfig, model: VggModel, nTrain: number): boolean {
  const bn = model.layers.some((l) => l.kind === "batchnorm");
  return (cfg.dropLast ?? true) || (bn && nTrain % cfg.batchSize === 1 && nTrain > 1);
}
