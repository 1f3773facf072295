/**
 * Contender "ORT on torch's export": torchvision's ONNX file (scripts/torch_bench.py export) run through our own
 * runtime wrapper with our session options, so any gap to `vgg bench infer` is down to the graph we emit.
 *
 *   node dist/bench/ort-export.js --model FILE.onnx --arch vgg16 --batch 8 --input-size 224
 *        [--threads 2] [--iterations 10] [--warmup 1] [--profile PREFIX] [--json]
 *
 * Prints one JSON line shaped like `vgg bench infer --json`.
 */
import { createSession } from "../src/runtime/ort.js";
import { buildModel, macCount } from "../src/zoo/model.js";
import { intFlag, parseFlags, randomInput, timeSession } from "./timing.js";

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  const model = f.get("model");
  if (!model) throw new Error("--model FILE.onnx is required");
  const arch = f.get("arch") ?? "vgg16";
  const batch = intFlag(f, "batch", 1);
  const size = intFlag(f, "input-size", 224);
  const threads = intFlag(f, "threads", 2);
  const macsPerImage = macCount(buildModel(arch, { inputSize: size }));

  const t0 = performance.now();
  const session = await createSession(model, { threads, optimization: "all", profilePrefix: f.get("profile") });
  const loadMs = performance.now() - t0;

  const r = await timeSession(session, randomInput(batch, size), {
    warmup: intFlag(f, "warmup", 1),
    iterations: intFlag(f, "iterations", 10),
    macsPerImage,
    loadMs,
  });
  const profile = f.has("profile") ? session.endProfiling() : undefined;
  await session.release();
  process.stdout.write(`${JSON.stringify({ ...r, ...(profile ? { profile } : {}) })}\n`);
}

main().catch((err) => {
  process.stderr.write(`ort-export: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
