import type { Command } from "commander";
import { openDataset } from "../data/spec.js";
import { presetTransforms } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { readModelMeta } from "../train/checkpoint.js";
import { evalWeights } from "../train/trainer.js";
import { loadWeights } from "../weights/load.js";
import { buildModel } from "../zoo/model.js";
import { addModelOptions, type ModelFlags, modelOptions, positiveInt } from "./options.js";

interface EvalFlags extends ModelFlags {
  data: string;
  split: "test" | "val";
  inputSize?: number;
  threads?: number;
  json?: boolean;
}

export function register(program: Command): void {
  addModelOptions(
    program
      .command("eval")
      .description("loss, top-1 and top-5 of a model on a data split (default: test)")
      .requiredOption("--data <spec>", "fashion-mnist[:DIR], cifar10:DIR, folder:DIR, npy:X.npy,Y.npy")
      .option("--split <name>", "test or val", "test")
      .option("--input-size <s>", "network input size", positiveInt)
      .option("--threads <n>", "engine threads", positiveInt)
      .option("--json", "print JSON"),
    false,
  ).action(async (o: EvalFlags) => {
    if (!o.weights) throw new VggError("eval needs --weights FILE");
    // A checkpoint written by `vgg train` describes its own model; a bare state_dict needs --arch and options.
    const meta = o.weights.endsWith(".safetensors") ? readModelMeta(o.weights) : undefined;
    const arch = o.arch ?? meta?.arch;
    if (!arch) throw new VggError("no model description in the file: pass --arch", o.weights);
    const options = meta && !o.arch ? { ...meta.options } : modelOptions(o, o.inputSize);
    const ds = await openDataset(o.data, { seed: 0, val: o.split === "val" ? undefined : 0, channels: options.inChannels === 1 ? 1 : 3, stats: meta?.mean.length ? { mean: meta.mean, std: meta.std } : undefined });
    const split = o.split === "val" ? ds.splits.val : ds.splits.test;
    if (!split) throw new VggError(`the data has no ${o.split} split`, o.data);
    const inputSize = options.inputSize ?? (ds.size ? Math.max(32, ds.size[0]) : 224);
    const model = buildModel(arch, { ...options, inputSize, numClasses: options.numClasses ?? ds.classes.length, inChannels: options.inChannels ?? ds.channels });
    const weights = await loadWeights(model, o.weights);
    const tf = presetTransforms(ds, { size: inputSize, channels: model.options.inChannels }, false);
    const s = await evalWeights(model, weights, split, tf, o.threads);
    if (o.json) return console.log(JSON.stringify({ arch, split: o.split, ...s }));
    console.log(`${arch} on ${o.data} ${o.split} (${s.n} images): top-1 ${(100 * s.top1).toFixed(2)}%  top-5 ${(100 * s.top5).toFixed(2)}%  loss ${s.loss.toFixed(4)}  (top-1 error ${(100 * s.top1Error).toFixed(2)}%, top-5 error ${(100 * s.top5Error).toFixed(2)}%)`);
  });
}
