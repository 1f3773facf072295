import { type Command, Option } from "commander";
import { VggError } from "../errors.js";
import { PROTOCOLS } from "../eval/protocols.js";
import { AUGMENTS, TRAIN_DEFAULTS as D, DEFAULT_EPOCHS, type TrainOptions, trainConfig } from "../train/config.js";
import { SCHEDULES } from "../train/schedule.js";
import { TrainInterrupted } from "../train/signals.js";
import { train } from "../train/trainer.js";
import type { AveragedTest } from "../train/types.js";
import { addDeviceOption, addModelOptions, commandDevice, describeOption, float, int, type ModelFlags, positiveInt } from "./options.js";

type TrainFlags = Omit<ModelFlags, "init" | "arch" | "config"> &
  Omit<TrainOptions, keyof ModelFlags> & {
    arch?: string;
    init: string;
    config?: string;
    memoryCheck?: boolean;
    weights?: string;
  };

export function register(program: Command): void {
  const cmd = program
    .command("train")
    .description("train a VGG with SGD (the whole step one ONNX graph on ONNX Runtime); evaluates on the test split at the end")
    .option("--data <spec>", "fashion-mnist[:DIR], cifar10:DIR, folder:DIR, npy:X.npy,Y.npy (required, except with --resume)")
    .requiredOption("--out <run_dir>", "run directory: metrics.jsonl, best/last.safetensors, result.json")
    .option("--epochs <n>", `epochs (default ${DEFAULT_EPOCHS}; on --resume, the run's own)`, positiveInt)
    .option("--batch-size <n>", "mini-batch size (paper: 256)", positiveInt, D.batchSize)
    .option("--lr <x>", "learning rate (paper: 0.01)", float, D.lr)
    .option("--momentum <x>", "SGD momentum", float, D.momentum)
    .option("--weight-decay <x>", "L2 weight decay", float, D.weightDecay)
    .option("--nesterov", "Nesterov momentum")
    .option("--no-decay-bn-bias", "exempt BN parameters and biases from weight decay")
    .option("--label-smoothing <x>", "cross-entropy label smoothing", float, D.labelSmoothing)
    .addOption(
      new Option("--schedule <kind>", "plateau (paper: /10 when val accuracy stalls), step, cosine").choices(SCHEDULES).default(D.schedule),
    )
    .option("--patience <n>", "plateau: epochs without improvement before a cut", int, D.patience)
    .option("--warmup <epochs>", "cosine: linear warm-up epochs (default 1)", float)
    .option("--steps <n>", "stop after this many steps in all", positiveInt)
    .option("--no-shuffle", "keep the data order")
    .option("--drop-last", "drop each epoch's last, partial batch (default: train on it too)")
    .option(
      "--augment <list>",
      `${AUGMENTS.join(",")} or none (default crop,flip; resized-crop,flip when --init is weights and --data folder:; erase: random erasing, p 0.5; resized-crop: torchvision's RandomResizedCrop)`,
    )
    .option("--scale <S|Smin:Smax>", "training scale for variable-size images (paper: 256, 384, or 256:512 jittered)")
    .addOption(new Option("--fit <how>", "small images below the input size: pad or resize").choices(["pad", "resize"]).default(D.fit))
    .addOption(
      new Option(
        "--normalize <how>",
        "meanstd (the data's), mean (the paper: subtract the mean RGB), none (default: the starting weights' normalisation when fine-tuning, else meanstd)",
      ).choices(["meanstd", "mean", "none"]),
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
      "a trained net A (a file, an entry name such as vgg11.IMAGENET1K_V1, or a URL): copy its first four conv layers and its FC layers, the rest from --init (the paper's rule for B-E)",
    )
    .option(
      "--freeze <part>",
      "fine-tune: freeze 'features' (the conv trunk) or every layer up to and including a tap (relu4_3, pool5, fc6): no gradients or updates there, and its batch norm and dropout run in eval mode (kept on --resume)",
    )
    .option(
      "--resume",
      "continue the run in --out from its last checkpoint (its flags are the run's own; --epochs, --steps, --threads, --workers, --checkpoint-every, --test-protocol, --test-every-epoch may change)",
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
    .option(
      "--test-every-epoch",
      "also score the test split after every epoch (and the EMA's, with --ema): the test curve and the time to each accuracy in report.md, as DAWNBench reports it; chooses nothing (kept on --resume)",
    )
    .option(
      "--ema <decay>",
      "also keep an exponential moving average of the weights and BN statistics, updated after every step (timm's ModelEmaV2; e.g. 0.999): validated each epoch, written as ema.safetensors and ema-best.safetensors, tested at the end (default off)",
      float,
    )
    .option(
      "--swa-start <epoch>",
      "stochastic weight averaging: the equal average of the weights at the end of epochs E..--epochs, its BN statistics recomputed over the training data at the end (torch.optim.swa_utils); written as swa.safetensors, tested at the end (default off)",
      positiveInt,
    )
    .option("--no-progress", "no progress bar")
    .option("--no-memory-check", "start even when the peak memory estimate exceeds the memory available");
  // --arch and --data come from the checkpoint on --resume, so they are required only for a new run.
  addModelOptions(cmd, false, true);
  addDeviceOption(cmd);
  describeOption(cmd, "--num-classes", "classes of the last FC layer (default: the data's)");
  describeOption(cmd, "--in-channels", "input channels (default: the data's)");
  // Kept only to answer with the flag that does it: --init FILE.
  cmd.options.find((o) => o.long === "--weights")?.hideHelp();
  cmd.action(async (o: TrainFlags) => {
    if (o.memoryCheck === false) process.env.VGG_NO_MEMORY_CHECK = "1";
    if (o.weights) throw new VggError("train takes a starting point with --init FILE|imagenet|URL, not --weights");
    const cfg = trainConfig(o);
    // Resolved here, so that "auto" without an adapter is a note on stderr (the trainer's log is stdout).
    cfg.device = await commandDevice(cfg.device);
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
          averagedLine("EMA", r.ema) +
          averagedLine("SWA", r.swa) +
          `; weights ${r.weights}; ${r.seconds.toFixed(0)} s`,
      );
    // evaluateProtocol's note (dense over images that fit the input) rides along in the kept scores.
    if (r.testProtocol && "note" in r.testProtocol) console.error(`vgg: note: ${r.testProtocol.note}`);
  });
}

/** The CLI's last line's part for an averaged model: its test top-1, and under --test-protocol. */
function averagedLine(name: string, a: AveragedTest | undefined): string {
  if (!a?.test) return "";
  const p = a.testProtocol ? ` (${(100 * a.testProtocol.top1).toFixed(2)}% ${a.testProtocol.protocol})` : "";
  return `, ${name} ${(100 * a.test.top1).toFixed(2)}%${p}`;
}
