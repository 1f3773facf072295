import type { Command } from "commander";
import { checkMemory, estimateTraining } from "../graph/memory.js";
import { benchTrain } from "../train/throughput.js";
import { buildModel } from "../zoo/model.js";
import { addTimingOptions, type TimingFlags } from "./bench.js";
import { addArchOptions, addDeviceOption, commandDevice, describeOption, type ModelFlags, modelOptions } from "./options.js";

interface Flags extends ModelFlags, TimingFlags {
  inputSize: number;
  steps: number;
  profile?: string;
}

/** `vgg bench train`: registered under the `bench` command that bench.ts creates. */
export function register(program: Command): void {
  const bench = program.commands.find((c) => c.name() === "bench");
  if (!bench) throw new Error("bench-train: register the bench command first");
  const cmd = addArchOptions(
    addTimingOptions(
      bench.command("train").description("training images/s over full SGD steps (forward, backward, update; data excluded)"),
      {
        batch: 128,
        inputSize: 32,
        timed: "steps",
        count: 8,
      },
    )
      .option("--profile <prefix>", "write ORT's JSON profile")
      .option("--json", "print one JSON line"),
  );
  // Dropout off by default, as in the PyTorch peer of `npm run bench`.
  addDeviceOption(cmd);
  describeOption(cmd, "--dropout", "dropout rate of fc6/fc7 (default 0 here)");
  cmd.action(async (o: Flags) => {
    const device = await commandDevice(o.device);
    const model = { ...modelOptions(o), dropout: o.dropout ?? 0 };
    checkMemory(
      `training ${o.arch} at batch ${o.batch}`,
      estimateTraining(buildModel(o.arch, model), o.batch),
      "use a smaller --batch or --input-size",
    );
    const r = await benchTrain({
      arch: o.arch,
      model,
      batch: o.batch,
      steps: o.steps,
      warmup: o.warmup,
      threads: o.threads,
      device,
      profilePrefix: o.profile,
    });
    if (o.json) return console.log(JSON.stringify(r));
    console.log(
      `${r.arch} ${r.inputSize}x${r.inputSize} batch ${r.batch} on ${r.device}: ${r.imagesPerSecond.toFixed(1)} img/s (best ${r.bestImagesPerSecond.toFixed(1)}), ${r.msPerStep.toFixed(0)} ms/step, ~${r.gflops.toFixed(0)} GFLOP/s`,
    );
    console.log(`graph build + session ${r.buildMs.toFixed(0)} ms, peak RSS ${r.peakRssMB.toFixed(0)} MB`);
  });
}
