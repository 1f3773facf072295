/**
 * Our graph, timed in-process with the library (no CLI): the same steps `vgg bench infer` takes, but with the
 * exact timing loop of bench/ort-export.ts, so the two differ only in the ONNX graph. Used by bench/profile.ts to
 * compare ORT profiles, and by bench/run.ts as "ours" with `--ours lib` (no CLI in the loop).
 *
 *   node dist/bench/ours.js --arch vgg16 --batch 8 --input-size 224 [--threads 2] [--iterations 10]
 *        [--warmup 1] [--winograd auto|on|off] [--profile PREFIX] [--save-onnx FILE]
 */
import { writeFileSync } from "node:fs";
import { encodeInferenceGraph } from "../src/graph/infer.js";
import type { WinogradChoice } from "../src/graph/winograd-infer.js";
import { Predictor } from "../src/predict/predictor.js";
import { createSession, type Session } from "../src/runtime/ort.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel, macCount } from "../src/zoo/model.js";
import { intFlag, parseFlags, randomInput, timeSession } from "./timing.js";

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  const arch = f.get("arch") ?? "vgg16";
  const batch = intFlag(f, "batch", 1);
  const size = intFlag(f, "input-size", 224);
  const threads = intFlag(f, "threads", 2);
  const winograd = (f.get("winograd") ?? "auto") as WinogradChoice;

  // loadMs covers what a user waits for before the first batch: weights in memory, graph compiled, session made.
  const t0 = performance.now();
  const m = buildModel(arch, { inputSize: size });
  const profilePrefix = f.get("profile");
  const saveOnnx = f.get("save-onnx");
  let session: Session;
  if (profilePrefix || saveOnnx) {
    // Predictor does not expose ORT's profiler; the graph is the same, only the way it reaches ORT differs.
    const weights = initWeights(m, "torchvision", 0);
    let bytes: Uint8Array | undefined = encodeInferenceGraph(m, weights, { winograd });
    weights.clear();
    if (saveOnnx) writeFileSync(saveOnnx, bytes);
    session = await createSession(bytes, { threads, optimization: "all", profilePrefix });
    bytes = undefined;
  } else {
    // The library's own path, as `vgg bench infer` takes it: the weights exist only while the graph is compiled.
    session = (await Predictor.create(arch, { inputSize: size, threads, winograd })).session;
  }
  const loadMs = performance.now() - t0;

  const r = await timeSession(session, randomInput(batch, size), {
    warmup: intFlag(f, "warmup", 1),
    iterations: intFlag(f, "iterations", 10),
    macsPerImage: macCount(m),
    loadMs,
  });
  const profile = f.has("profile") ? session.endProfiling() : undefined;
  await session.release();
  process.stdout.write(
    `${JSON.stringify({
      ...r,
      ...(profile ? { profile } : {}),
    })}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`ours: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
