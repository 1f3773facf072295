/**
 * The `vgg` command. Bad input of any kind ends in one line on stderr and a non-zero exit; only a bug shows a
 * stack, and only with VGG_DEBUG=1.
 */
import { Command, CommanderError } from "commander";
import { VggError } from "../errors.js";
import { ortVersion } from "../runtime/ort.js";
import { resolveWeights } from "../weights/hub.js";
import { register as registerBench } from "./bench.js";
import { register as registerBenchTrain } from "./bench-train.js";
import { register as registerConvert } from "./convert.js";
import { register as registerDistance } from "./distance.js";
import { register as registerEval } from "./eval.js";
import { register as registerExport } from "./export.js";
import { register as registerFeatures } from "./features.js";
import { register as registerInfer } from "./infer.js";
import { register as registerList } from "./list.js";
import { checkTapFlags } from "./options.js";
import { register as registerPredict } from "./predict.js";
import { register as registerReproduce } from "./reproduce.js";
import { register as registerServe } from "./serve.js";
import { register as registerServeDemo } from "./serve-demo.js";
import { register as registerSummary } from "./summary.js";
import { register as registerTrain } from "./train.js";
import { PACKAGE_VERSION } from "./version.js";
import { register as registerWeights } from "./weights.js";

function fail(err: unknown): never {
  // --help and --version end in a CommanderError with exit code 0: that is success, not a failure.
  if (err instanceof CommanderError) process.exit(err.exitCode ?? 1);
  const msg = err instanceof Error ? err.message : String(err);
  console.error(`vgg: ${msg.split("\n")[0]}`);
  if (!(err instanceof VggError) && process.env.VGG_DEBUG) console.error(err);
  // A training run stopped by a signal (here through `vgg reproduce`) exits as the shell reports that signal.
  process.exit(err instanceof VggError ? err.exitCode : 70);
}

const program = new Command("vgg")
  .description("VGG ConvNets (Simonyan & Zisserman) compiled to ONNX and run on ONNX Runtime")
  .version(`${PACKAGE_VERSION} (onnxruntime-node ${ortVersion})`)
  .showSuggestionAfterError()
  .exitOverride();
for (const r of [
  registerList,
  registerSummary,
  registerInfer,
  registerPredict,
  registerFeatures,
  registerDistance,
  registerExport,
  registerConvert,
  registerBench,
  registerBenchTrain,
  registerTrain,
  registerReproduce,
  registerEval,
  registerServe,
  registerServeDemo,
  registerWeights,
])
  r(program);

// --weights imagenet | an entry name | a URL becomes the local file before any command runs (downloaded once into the
// cache), so every command that takes weights takes them by name; `vgg train --init` resolves its own in the trainer.
program.hook("preAction", async (_program, action) => {
  const o = action.opts<{ weights?: unknown; arch?: string }>();
  if (typeof o.weights !== "string" || action.name() === "train") return;
  // A tap the model lacks is refused before the weights are fetched (a download of 500 MB) or read.
  checkTapFlags(action.opts());
  const tty = process.stderr.isTTY;
  action.setOptionValue(
    "weights",
    // `vgg distance` is VGG16's unless told otherwise (LPIPS's network), so `--weights imagenet` means vgg16's there.
    await resolveWeights(o.weights, {
      arch: o.arch ?? (action.name() === "distance" ? "vgg16" : undefined),
      progress: tty,
      log: tty ? (l) => console.error(l) : undefined,
    }),
  );
});

process.on("unhandledRejection", fail);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  fail(err);
}
