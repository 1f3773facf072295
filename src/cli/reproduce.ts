import { type Command, Option } from "commander";
import { VggError } from "../errors.js";
import type { ConfigName } from "../reproduce/results.js";
import { CONFIG_ARCHS, type ReproduceOptions, reproduce } from "../reproduce/run.js";
import { float, positiveInt } from "./options.js";

/** The options of `reproduce`, as commander gives them: lists and ranges as typed, batchNorm as --no-bn's `bn`. */
type ReproduceFlags = Omit<ReproduceOptions, "configs" | "jitterConfig" | "jitter" | "batchNorm" | "command"> & {
  configs: string;
  jitterConfig: string;
  jitter: string;
  bn: boolean;
};

function parseConfigs(s: string): ConfigName[] {
  const names = s.split(",").map((x) => x.trim());
  for (const n of names)
    if (!(n in CONFIG_ARCHS)) throw new VggError(`--configs: unknown '${n}' (known: ${Object.keys(CONFIG_ARCHS).join(", ")})`);
  return names as ConfigName[];
}

export function register(program: Command): void {
  program
    .command("reproduce")
    .description(
      "train the paper's configs A, A-LRN, B, C, D, E at small scale, evaluate every test protocol, write report.html/report.md/results.json",
    )
    .requiredOption("--out <dir>", "output directory (finished runs in it are reused, interrupted ones resumed)")
    .option("--data <spec>", "dataset", "fashion-mnist")
    .option("--budget-minutes <m>", "wall-time budget: sets the epochs and test images unless given", float, 90)
    .option("--configs <list>", "configs to train", "A,A-LRN,B,C,D,E")
    .option("--jitter-config <name>", "config trained again with the jittered scale (none to skip)", "D")
    .option("--width-divisor <n>", "divide every width by this", positiveInt, 4)
    .addOption(
      new Option("--head <kind>", "paper (FC-4096 x2, dense as convs) or compact").choices(["paper", "compact"]).default("compact"),
    )
    .option("--no-bn", "the paper's nets without batch normalisation")
    .option("--input-size <s>", "network input (crop) size", positiveInt, 32)
    .option("--scale <S>", "fixed training scale S (image shorter side)", positiveInt, 36)
    .option("--jitter <Smin:Smax>", "jittered training scale range", "32:48")
    .option("--epochs <n>", "epochs per run (default: from the budget)", positiveInt)
    .option("--steps <n>", "stop each run after this many steps (smoke tests)", positiveInt)
    .option("--batch-size <n>", "mini-batch size", positiveInt, 128)
    .option("--lr <x>", "learning rate (cosine schedule)", float, 0.05)
    .option("--seed <n>", "seed of every run", (v) => Number.parseInt(v, 10), 0)
    .option("--test-images <n>", "test images per protocol (default: from the budget)", positiveInt)
    .option(
      "--val <n>",
      "held-out validation images: a count, or a fraction < 1 (default 5000 for Fashion-MNIST and CIFAR-10, else 0.1)",
      float,
    )
    .option("--no-init-from-a", "train B-E from scratch instead of from net A's layers")
    .option("--threads <n>", "engine threads", positiveInt)
    .option("--no-progress", "no progress bars")
    .action(async ({ configs, jitter, jitterConfig, bn, ...o }: ReproduceFlags) => {
      const j = /^(\d+):(\d+)$/.exec(jitter);
      if (!j || Number(j[1]) > Number(j[2])) throw new VggError(`--jitter wants Smin:Smax, got '${jitter}'`);
      const jc = jitterConfig === "none" ? null : parseConfigs(jitterConfig)[0];
      await reproduce({
        ...o,
        configs: parseConfigs(configs),
        jitterConfig: jc,
        batchNorm: bn,
        jitter: [Number(j[1]), Number(j[2])],
        command: `vgg ${process.argv.slice(2).join(" ")}`,
      });
    });
}
