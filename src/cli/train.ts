import { type Command, Option } from "commander";
import { VggError } from "../errors.js";
import { PROTOCOLS, type Protocol } from "../eval/protocols.js";
import { SCHEDULES, type ScheduleKind } from "../train/schedule.js";
import { DEFAULT_EPOCHS, type TrainConfig, TrainInterrupted, train } from "../train/trainer.js";
import { addModelOptions, describeOption, float, int, type ModelFlags, modelOptions, positiveInt } from "./options.js";

interface TrainFlags extends Omit<ModelFlags, "init" | "arch"> {
  arch?: string;
  data?: string;
  out: string;
  epochs: number;
  batchSize: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov?: boolean;
  decayBnBias?: boolean;
  dropout?: number;
  labelSmoothing: number;
  schedule: ScheduleKind;
  patience: number;
  warmup?: number;
  init: string;
  steps?: number;
  shuffle: boolean;
  augment: string;
  scale?: string;
  fit: "pad" | "resize";
  normalize: "meanstd" | "mean" | "none";
  val?: number;
  workers?: number;
  threads?: number;
  resume?: boolean;
  memoryCheck?: boolean;
  initFrom?: string;
  progress: boolean;
  inputSize?: number;
  checkpointEvery?: number;
  testProtocol?: Protocol;
  dropLast?: boolean;
}

/** `--augment crop,flip,lighting,erase` or `none`. */
function parseAugment(s: string): { crop: boolean; flip: boolean; lighting: boolean; erase: boolean } {
  const parts = s
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const known = ["crop", "flip", "lighting", "erase", "none"];
  for (const p of parts) if (!known.includes(p)) throw new VggError(`--augment: unknown '${p}' (known: ${known.join(", ")})`);
  return {
    crop: parts.includes("crop"),
    flip: parts.includes("flip"),
    lighting: parts.includes("lighting"),
    erase: parts.includes("erase"),
  };
}

function parseScale(s: string | undefined): number | [number, number] | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)(?::(\d+))?$/.exec(s.trim());
  if (!m) throw new VggError(`--scale wants S or Smin:Smax, got '${s}'`);
  return m[2] ? [Number(m[1]), Number(m[2])] : Number(m[1]);
}

export function register(program: Command): void {
  const cmd = program
    .command("train")
    .description("train a VGG with SGD (the whole step one ONNX graph on ONNX Runtime); evaluates on the test split at the end")
    .option("--data <spec>", "fashion-mnist[:DIR], cifar10:DIR, folder:DIR, npy:X.npy,Y.npy (required, except with --resume)")
    .requiredOption("--out <run_dir>", "run directory: metrics.jsonl, best/last.safetensors, result.json")
    .option("--epochs <n>", `epochs (default ${DEFAULT_EPOCHS}; on --resume, the run's own)`, positiveInt)
    .option("--batch-size <n>", "mini-batch size (paper: 256)", positiveInt, 128)
    .option("--lr <x>", "learning rate (paper: 0.01)", float, 0.01)
    .option("--momentum <x>", "SGD momentum", float, 0.9)
    .option("--weight-decay <x>", "L2 weight decay", float, 5e-4)
    .option("--nesterov", "Nesterov momentum")
    .option("--no-decay-bn-bias", "exempt BN parameters and biases from weight decay")
    .option("--label-smoothing <x>", "cross-entropy label smoothing", float, 0)
    .addOption(
      new Option("--schedule <kind>", "plateau (paper: /10 when val accuracy stalls), step, cosine").choices(SCHEDULES).default("plateau"),
    )
    .option("--patience <n>", "plateau: epochs without improvement before a cut", int, 2)
    .option("--warmup <epochs>", "cosine: linear warm-up epochs (default 1)", float)
    .option("--steps <n>", "stop after this many steps in all", positiveInt)
    .option("--no-shuffle", "keep the data order")
    .option("--drop-last", "drop each epoch's last, partial batch (default: train on it too)")
    .option("--augment <list>", "crop,flip,lighting,erase (random erasing, p 0.5) or none", "crop,flip")
    .option("--scale <S|Smin:Smax>", "training scale for variable-size images (paper: 256, 384, or 256:512 jittered)")
    .addOption(new Option("--fit <how>", "small images below the input size: pad or resize").choices(["pad", "resize"]).default("pad"))
    .addOption(
      new Option("--normalize <how>", "meanstd, mean (the paper: subtract the mean RGB), none")
        .choices(["meanstd", "mean", "none"])
        .default("meanstd"),
    )
    .option(
      "--val <n>",
      "held-out validation images from the training data: a count, or a fraction < 1 (default 5000 for Fashion-MNIST and CIFAR-10, else 0.1)",
      float,
    )
    .option("--input-size <s>", "network input size (default: the data's, at least 32)", positiveInt)
    .option("--workers <n>", "data worker threads (default 1; 2 for image files)", int)
    .option("--threads <n>", "engine threads", positiveInt)
    .option(
      "--init-from <file>",
      "a trained net A: copy its first four conv layers and its FC layers, the rest from --init (the paper's rule for B-E)",
    )
    .option(
      "--resume",
      "continue the run in --out from its last checkpoint (its flags are the run's own; --epochs, --steps, --threads, --workers, --checkpoint-every, --test-protocol may change)",
    )
    .option(
      "--checkpoint-every <steps>",
      "also checkpoint every this many steps inside an epoch (a crash loses at most that many; kept on --resume)",
      positiveInt,
    )
    .addOption(
      new Option("--test-protocol <p>", "also score the test split under a test protocol of the paper (dense: image + flip)").choices(
        PROTOCOLS,
      ),
    )
    .option("--no-progress", "no progress bar")
    .option("--no-memory-check", "start even when the peak memory estimate exceeds the memory available");
  // --arch and --data come from the checkpoint on --resume, so they are required only for a new run.
  addModelOptions(cmd, false);
  // Training's --init takes a weights file as well as a scheme name.
  const init = cmd.options.find((o) => o.long === "--init");
  if (init) init.argChoices = undefined;
  describeOption(cmd, "--init", "weights file to start from, or torchvision|paper|glorot");
  describeOption(cmd, "--num-classes", "classes of the last FC layer (default: the data's)");
  describeOption(cmd, "--in-channels", "input channels (default: the data's)");
  // Kept only to answer with the flag that does it: --init FILE.
  cmd.options.find((o) => o.long === "--weights")?.hideHelp();
  cmd.action(async (o: TrainFlags) => {
    if (o.memoryCheck === false) process.env.VGG_NO_MEMORY_CHECK = "1";
    if (o.weights) throw new VggError("train takes a starting point with --init FILE, not --weights");
    if (!o.resume) {
      if (o.arch === undefined) throw new VggError("required option '--arch <name>' not specified");
      if (o.data === undefined) throw new VggError("required option '--data <spec>' not specified");
    }
    const aug = parseAugment(o.augment);
    const cfg: TrainConfig = {
      arch: o.arch ?? "",
      model: { ...modelOptions(o as ModelFlags), inputSize: o.inputSize },
      data: o.data ?? "",
      out: o.out,
      epochs: o.epochs,
      batchSize: o.batchSize,
      lr: o.lr,
      momentum: o.momentum,
      weightDecay: o.weightDecay,
      nesterov: Boolean(o.nesterov),
      decayExempt: o.decayBnBias === false ? "bn_and_bias" : "none",
      labelSmoothing: o.labelSmoothing,
      schedule: o.schedule,
      patience: o.patience,
      warmup: o.warmup,
      init: o.init,
      initFrom: o.initFrom,
      seed: o.seed ?? 0,
      steps: o.steps,
      shuffle: o.shuffle,
      flip: aug.flip,
      cropPadding: aug.crop ? undefined : 0,
      lighting: aug.lighting ? 0.1 : 0,
      erase: aug.erase ? 0.5 : 0,
      scale: parseScale(o.scale),
      fit: o.fit,
      normalize: o.normalize,
      val: o.val,
      workers: o.workers,
      threads: o.threads,
      resume: Boolean(o.resume),
      progress: o.progress,
      checkpointEvery: o.checkpointEvery,
      testProtocol: o.testProtocol,
      dropLast: Boolean(o.dropLast),
    };
    let r: Awaited<ReturnType<typeof train>>;
    try {
      r = await train(cfg);
    } catch (err) {
      if (!(err instanceof TrainInterrupted)) throw err;
      // Ctrl-C or SIGTERM: the checkpoint is written; say how to continue and exit as a shell does after the signal.
      console.error(`vgg: ${err.message}`);
      process.exitCode = err.exitCode;
      return;
    }
    if (r.test)
      console.log(
        `test top-1 accuracy ${(100 * r.test.top1).toFixed(2)}% (${r.test.n} images)` +
          (r.testProtocol ? `, ${(100 * r.testProtocol.top1).toFixed(2)}% under the ${r.testProtocol.protocol} protocol` : "") +
          `; weights ${r.weights}; ${r.seconds.toFixed(0)} s`,
      );
  });
}
