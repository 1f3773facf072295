import { dirname, join } from "node:path";
import { type Command, Option } from "commander";
import { describeSplits } from "../data/dataset.js";
import { BatchLoader } from "../data/loader.js";
import { openDataset } from "../data/spec.js";
import { evalScale, presetTransforms } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { evaluateMany, evalWeights } from "../eval/evaluate.js";
import { scores } from "../eval/metrics.js";
import { evaluateProtocol, PROTOCOLS, type Protocol, parseScales, subsetSplit } from "../eval/protocols.js";
import { checkPrecision, type Precision } from "../graph/precision.js";
import { Predictor } from "../predict/predictor.js";
import { forChannels, weightsNormalization } from "../predict/preprocess.js";
import type { DeviceChoice } from "../runtime/device.js";
import type { Tensor } from "../tensor.js";
import { loadWeights } from "../weights/load.js";
import { readModelMeta } from "../weights/model-meta.js";
import { buildModel } from "../zoo/model.js";
import { addArchOptions, addDeviceOption, commandDevice, type ModelFlags, positiveInt, resolveModel } from "./options.js";
import { addPrecisionOptions, calibrationPreprocessing, type PrecisionFlags, precisionOptions } from "./precision-flags.js";

interface EvalFlags extends Omit<ModelFlags, "weights">, Omit<PrecisionFlags, "precision"> {
  weights: string;
  data: string;
  /** Unset: test, or a folder's val/ when it has no test/. */
  split?: "test" | "val";
  inputSize?: number;
  threads?: number;
  device: DeviceChoice;
  json?: boolean;
  precision: string;
  protocol: Protocol;
  scales?: string;
  limit?: number;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

export function register(program: Command): void {
  const cmd = addPrecisionOptions(
    addArchOptions(
      program
        .command("eval")
        .description("loss, top-1 and top-5 of a model on a data split (default: test), in one or more precisions")
        .requiredOption(
          "--weights <file|name|url>",
          "a `vgg train` checkpoint (describes its model), or with --arch a torchvision .pth/.safetensors, imagenet, an entry name or a URL",
        )
        .requiredOption("--data <spec>", "fashion-mnist[:DIR], cifar10:DIR, folder:DIR, npy:X.npy,Y.npy")
        .addOption(
          new Option("--split <name>", "test or val (default: test; a folder's val/ when it has no test/)").choices(["test", "val"]),
        )
        .option("--input-size <s>", "network input size", positiveInt)
        .option("--threads <n>", "engine threads", positiveInt)
        .addOption(
          new Option(
            "--protocol <p>",
            "single (rescale, centre crop), dense (FC as convs, whole image + flip), multicrop (5x5 crops x 2 flips), dense+multicrop",
          )
            .choices(PROTOCOLS)
            .default("single"),
        )
        .option(
          "--scales <list>",
          "test scales Q (image shorter side, in the data's pixels): 256,384,512 or relative S-32,S,S+32 / Smin,Smid,Smax",
        )
        .option("--limit <n>", "evaluate a seeded subset of n images", positiveInt)
        .option("--json", "print JSON"),
      false,
    ),
    {
      list: true,
      preset: true,
      calibrateHelp:
        "int8 calibration images: train[:N] (N images, default 1000, drawn from the data's training split with the evaluation transform), a float32 NCHW .npy, or a directory/pattern of image files",
    },
  );
  addDeviceOption(cmd).action(async (o: EvalFlags) => {
    const precisions = [...new Set(o.precision.split(",").map((p) => checkPrecision(p.trim())))];
    const engine = { threads: o.threads, device: await commandDevice(o.device) };
    // A checkpoint written by `vgg train` describes its own model; a bare state_dict needs --arch and options.
    const meta = o.weights.endsWith(".safetensors") ? readModelMeta(o.weights) : undefined;
    const { arch, options } = resolveModel(o);
    const ds = await openDataset(o.data, {
      seed: 0,
      val: o.split === "val" ? undefined : 0,
      channels: options.inChannels === 1 ? 1 : 3,
      stats: meta?.mean.length ? { mean: meta.mean, std: meta.std } : undefined,
    });
    // A folder without test/ (ImageNet's layout: train/ and val/) is scored on val/ unless a split is asked for,
    // as torchvision's reference scripts do; a held-out val is never a silent stand-in (it depends on the seed).
    const splitName = o.split ?? (!ds.splits.test && ds.dirs?.val ? "val" : "test");
    const split = splitName === "val" ? ds.splits.val : ds.splits.test;
    if (!split) {
      const hint = ds.dirs ? ` (no ${join(dirname(ds.dirs.train), splitName)} folder)` : "";
      throw new VggError(`the data has no ${splitName} split${hint}`, o.data);
    }
    // Which directory feeds which split is a convention; say which one is scored (not in JSON: one object only).
    if (ds.dirs && !o.json) console.log(`data ${o.data}: ${describeSplits(ds)}; scoring ${splitName}`);
    const inputSize = options.inputSize ?? (ds.size ? Math.max(32, ds.size[0]) : 224);
    const model = buildModel(arch, {
      ...options,
      inputSize,
      numClasses: options.numClasses ?? ds.classes.length,
      inChannels: options.inChannels ?? ds.channels,
    });
    const weights = await loadWeights(model, o.weights);
    // A bare weights file is scored as it was trained: with its entry's (or torchvision's ImageNet) statistics, as
    // predict and fine-tuning use them, not the data's.
    const preset = meta?.preset ?? {
      size: inputSize,
      ...forChannels(weightsNormalization(o.weights, model.options.inChannels), ds.channels),
    };
    const tf = presetTransforms(ds, { ...preset, size: inputSize, channels: model.options.inChannels }, false);
    if (o.protocol !== "single" || o.scales !== undefined || o.limit !== undefined) {
      const flag = o.protocol !== "single" ? "--protocol" : o.scales !== undefined ? "--scales" : "--limit";
      if (precisions.some((p) => p !== "fp32")) throw new VggError(`${flag} runs in fp32 only, not with --precision ${o.precision}`);
      // The training scale: the one single-crop evaluation uses (a fixed S, the middle of a jittered range, the
      // input size for resized small images, or their own size when only padded); Smin/Smax of a jittered range.
      const S = evalScale(tf, ds.size);
      const [Smin, Smax] = Array.isArray(preset.scale) ? preset.scale : [S, S];
      const scales = o.scales ? parseScales(o.scales, { S, Smin, Smax }) : [S];
      const sub = subsetSplit(split, o.limit);
      const r = await evaluateProtocol(model, weights, sub, o.protocol, scales, {
        values: { mean: tf.mean, std: tf.std, channels: tf.channels },
        native: ds.size,
        ...engine,
      });
      const out = {
        arch,
        split: splitName,
        protocol: r.protocol,
        scales: r.scales,
        n: r.n,
        loss: r.loss,
        top1: r.top1,
        top5: r.top5,
        top1Error: r.top1Error,
        top5Error: r.top5Error,
        seconds: r.seconds,
        ...(r.note ? { note: r.note } : {}),
      };
      // On stderr, so that --json's stdout stays one JSON line.
      if (r.note) console.error(`vgg: note: ${r.note}`);
      if (o.json) return console.log(JSON.stringify(out));
      console.log(
        `${arch} on ${o.data} ${splitName} (${r.n} images), ${r.protocol} at Q=${r.scales.join(",")}: top-1 ${pct(r.top1)}  top-5 ${pct(r.top5)}  loss ${r.loss.toFixed(4)}  (top-1 error ${pct(r.top1Error)}, top-5 error ${pct(r.top5Error)})  ${r.seconds.toFixed(1)} s`,
      );
      return;
    }
    if (precisions.length === 1 && precisions[0] === "fp32") {
      const s = await evalWeights(model, weights, split, tf, engine);
      const normalization = { mean: tf.mean ?? null, std: tf.std ?? null };
      if (o.json) return console.log(JSON.stringify({ arch, split: splitName, ...s, normalization }));
      console.log(
        `${arch} on ${o.data} ${splitName} (${s.n} images): top-1 ${(100 * s.top1).toFixed(2)}%  top-5 ${(100 * s.top5).toFixed(2)}%  loss ${s.loss.toFixed(4)}  (top-1 error ${(100 * s.top1Error).toFixed(2)}%, top-5 error ${(100 * s.top5Error).toFixed(2)}%)`,
      );
      return;
    }
    // Several precisions: fp32 is always run first, as the reference for agreement.
    const order: Precision[] = ["fp32", ...precisions.filter((p) => p !== "fp32")];
    const m = /^train(?::(\d+))?$/.exec(o.calibrate ?? "");
    const fromTrain = m
      ? async (): Promise<Tensor> => {
          const count = Math.min(Number(m[1] ?? o.calibrateCount ?? 1000), ds.splits.train.indices.length);
          const loader = new BatchLoader(ds.splits.train, { batchSize: count, shuffle: true, seed: 1, transforms: tf, workers: 0 });
          try {
            for await (const b of loader.epoch(0)) return { dtype: "float32", shape: [b.n, ...model.inputShape], data: b.x };
          } finally {
            await loader.close();
          }
          throw new VggError("the training split is empty", o.data);
        }
      : undefined;
    // --preset, else the checkpoint's own evaluation transform, else torchvision's.
    const prep = () => calibrationPreprocessing(o, model.inputShape);
    const ps: Predictor[] = [];
    try {
      for (const p of order) {
        const po = await precisionOptions({ ...o, precision: p }, p, model.inputShape, prep, fromTrain);
        ps.push(await Predictor.fromWeights(model, weights, { ...po, ...engine }));
      }
      const { tallies, agreement } = await evaluateMany(ps, split, tf);
      const rows = order.map((p, i) => ({ precision: p, ...scores(tallies[i]), agreement: agreement[i] }));
      if (o.json) return console.log(JSON.stringify({ arch, split: splitName, ...rows[0], precisions: rows }));
      console.log(`${arch} on ${o.data} ${splitName} (${rows[0].n} images):`);
      for (const r of rows)
        console.log(
          `  ${r.precision.padEnd(5)} top-1 ${pct(r.top1)}  top-5 ${pct(r.top5)}  loss ${r.loss.toFixed(4)}  top-1 agrees with fp32 on ${pct(r.agreement)}`,
        );
    } finally {
      for (const p of ps) await p.release();
    }
  });
}
