/** The trainer's types: its configuration, what it records per epoch and returns, and what a checkpoint carries. */
import type { Scores } from "../eval/metrics.js";
import type { Protocol } from "../eval/protocols.js";
import type { DeviceChoice } from "../runtime/device.js";
import type { ModelOptions } from "../zoo/model.js";
import type { ScheduleKind, ScheduleState } from "./schedule.js";

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
  /** Where ORT runs (cpu, webgpu, auto; default cpu): may change on resume, as threads. */
  device?: DeviceChoice;
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
   * Score the test split after every epoch (raw weights, and the EMA with --ema), recorded in metrics.jsonl and the
   * report with the time to accuracy as DAWNBench reports it. It informs nothing: "best" is still chosen by validation.
   */
  testEveryEpoch?: boolean;
  /**
   * Drop the epoch's last, partial batch (PyTorch's drop_last). Off by default: that batch runs through a second
   * step graph built for its size. Runs saved before this option existed dropped it, and still do on resume.
   */
  dropLast?: boolean;
  /**
   * An exponential moving average of the weights and BN statistics with this decay (timm's ModelEmaV2), updated
   * after every step, validated each epoch, tested at the end (averaging.ts).
   */
  ema?: number;
  /** Stochastic weight averaging of the weights at the end of epochs swaStart..epochs (1-based), BN redone at the end. */
  swaStart?: number;
}

/** A run's settings once the defaults and, on resume, the saved args are applied. */
export type RunConfig = TrainConfig & { epochs: number };

export interface EpochMetrics {
  epoch: number;
  step: number;
  lr: number;
  trainLoss: number;
  trainTop1: number;
  val: Scores | null;
  imagesPerSecond: number;
  seconds: number;
  /** With --ema: the EMA's validation scores (null without a validation split). */
  emaVal?: Scores | null;
  /** With --test-every-epoch: the test split's scores after this epoch (not counted in `seconds`). */
  test?: Scores;
  /** With --test-every-epoch and --ema: the EMA's. */
  emaTest?: Scores;
}

/** An averaged model's test result (--ema, --swa-start). */
export interface AveragedTest {
  weights: string;
  test: Scores | null;
  /** EMA: the epoch its weights are from. */
  epoch?: number;
  /** SWA: the first and last epoch averaged. */
  epochs?: [number, number];
  /** Under --test-protocol, as the best checkpoint is. */
  testProtocol?: Scores & { protocol: Protocol; scales: number[] };
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
  /** --ema: the EMA (best by its validation accuracy) on the test split. */
  ema?: AveragedTest;
  /** --swa-start: the SWA model on the test split. */
  swa?: AveragedTest;
}

export type Log = (line: string) => void;

export interface TrainerState {
  /** Completed epochs. */
  epoch: number;
  /** Completed optimizer steps. */
  step: number;
  schedule: ScheduleState;
  bestValAcc: number;
  bestEpoch: number;
  /** The flags the run started with, for --resume. */
  args: Record<string, unknown>;
  /** The metrics of the completed epochs: metrics.jsonl is rewritten from them on resume. */
  history?: EpochMetrics[];
  /** The divergence guard's recent losses. */
  recent?: number[];
  /**
   * A checkpoint taken inside epoch `epoch` (--checkpoint-every, or Ctrl-C): the loader position to resume at
   * (batches 0..batch-1 of the epoch are done) and the epoch's running sums so far. Absent at epoch ends.
   */
  position?: { epoch: number; batch: number };
  partial?: { lossSum: number; hits: number; seen: number; lr: number };
  /** --swa-start: how many epochs' weights the SWA average holds. */
  swaCount?: number;
  /** --ema: the best validation accuracy of the EMA so far, and its epoch (ema-best.safetensors). */
  bestEmaValAcc?: number;
  bestEmaEpoch?: number;
}
