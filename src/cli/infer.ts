import type { Command } from "commander";
import { VggError } from "../errors.js";
import { checkMemory, estimateInference } from "../graph/memory.js";
import { readNpy, writeNpy } from "../io/npy.js";
import { Predictor } from "../predict/predictor.js";
import type { DeviceChoice } from "../runtime/device.js";
import { numel, type Tensor } from "../tensor.js";
import { checkTaps } from "../zoo/features.js";
import { buildModel } from "../zoo/model.js";
import { addDeviceOption, addModelOptions, commandDevice, describeOption, type ModelFlags, positiveInt, resolveModel } from "./options.js";
import { addPrecisionOptions, calibrationPreprocessing, type PrecisionFlags, precisionOptions } from "./precision-flags.js";

interface InferFlags extends ModelFlags, PrecisionFlags {
  input: string;
  out: string;
  tap?: string;
  batchSize: number;
  threads?: number;
  device: DeviceChoice;
}

export function register(program: Command): void {
  const cmd = addPrecisionOptions(
    addModelOptions(
      program
        .command("infer")
        .description("run a model on a float32 NCHW .npy batch and write the logits (or a tap) as .npy")
        .requiredOption("--input <x.npy>", "float32 NCHW input")
        .requiredOption("--out <y.npy>", "output file")
        .option("--tap <name>", "output this named feature instead of the logits (relu1_1 ... relu5_4, pool1 ... pool5, fc6, fc7)")
        .option("--batch-size <n>", "images per engine run", positiveInt, 16)
        .option("--threads <n>", "engine threads", positiveInt),
      false,
    ),
    { preset: true },
  );
  addDeviceOption(cmd);
  describeOption(cmd, "--in-channels", "input channels (default: the .npy's C)");
  cmd.action(async (o: InferFlags) => {
    const t0 = performance.now();
    const x = await readNpy(o.input);
    if (x.shape.length !== 4) throw new VggError(`want a float32 NCHW array, got shape [${x.shape.join(", ")}]`, o.input);
    if (x.dtype !== "float32") throw new VggError(`want float32, got ${x.dtype}`, o.input);
    const [n, c, h, w] = x.shape;
    if (n === 0) throw new VggError(`the batch is empty (shape [${x.shape.join(", ")}])`, o.input);
    if (h !== w) throw new VggError(`images must be square, got ${h}x${w}`, o.input);
    if (o.arch && o.inChannels === undefined) o.inChannels = c;
    const device = await commandDevice(o.device);
    const tap = o.tap ?? "logits";
    let p: Predictor;
    try {
      const { arch, options } = resolveModel(o, h);
      const model = buildModel(arch, options);
      // Before calibration data or weights are read (a checkpoint's model is only known here).
      checkTaps(model, [tap]);
      const shape = model.inputShape;
      checkMemory(
        `inference with ${arch} at batch ${Math.min(n, o.batchSize)}`,
        estimateInference(model, Math.min(n, o.batchSize)),
        "use a smaller --batch-size",
      );
      const prec = await precisionOptions(o, o.precision, shape, () => calibrationPreprocessing(o, shape));
      p = await Predictor.create(arch, {
        ...options,
        ...prec,
        weights: o.weights,
        init: o.init,
        seed: o.seed,
        taps: [tap],
        threads: o.threads,
        device,
      });
    } catch (err) {
      if (err instanceof VggError && !err.file && /input size/.test(err.message)) throw new VggError(err.message, o.input);
      throw err;
    }
    const per = c * h * w;
    const chunks: Tensor[] = [];
    for (let b = 0; b < n; b += o.batchSize) {
      const m = Math.min(o.batchSize, n - b);
      const part: Tensor = { dtype: "float32", shape: [m, c, h, w], data: (x.data as Float32Array).subarray(b * per, (b + m) * per) };
      chunks.push((await p.run(part, o.input))[tap]);
    }
    const outShape = [n, ...chunks[0].shape.slice(1)];
    const data = new Float32Array(numel(outShape));
    let off = 0;
    for (const t of chunks) {
      data.set(t.data as Float32Array, off);
      off += t.data.length;
    }
    await writeNpy(o.out, { dtype: "float32", shape: outShape, data });
    await p.release();
    // One line on success, so a script's log shows what came out (and a silent exit is never mistaken for one).
    console.log(`${o.out}: float32 [${outShape.join(", ")}] (tap ${tap}), ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  });
}
