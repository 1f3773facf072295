/**
 * The server under the serve fuzz (bench/fuzz/serve.ts): `vgg serve`'s InferenceServer and ServedModel, as the
 * CLI puts them together, in a process of its own (so that a crash shows as its exit), with a short request timeout
 * (the CLI has no flag for it: 30 s) so that slow clients are dropped within the run.
 *
 *   node dist/bench/fuzz/serve-child.js --model FILE.onnx [--timeout-ms 2000] [--max-body 1048576] [--max-queue 8]
 *
 * Prints "ready: URL" once the model answers; SIGTERM stops it as `vgg serve` stops.
 */
import { ServedModel } from "../../src/serve/models.js";
import { InferenceServer } from "../../src/serve/server.js";
import { intFlag, parseFlags } from "../timing.js";

const f = parseFlags(process.argv.slice(2));
const file = f.get("model");
if (!file) throw new Error("serve-child: --model FILE.onnx is required");
const opts = {
  threads: intFlag(f, "threads", 1),
  batching: { maxBatch: intFlag(f, "max-batch", 4), maxDelayMs: intFlag(f, "max-delay-ms", 1), maxQueue: intFlag(f, "max-queue", 8) },
};
let server: InferenceServer | undefined;
const model = await ServedModel.describe({ file, name: "toy" }, opts, (m, rows) => server?.metrics.batch(m, rows));
server = new InferenceServer([model], "fuzz", {
  maxBodyBytes: intFlag(f, "max-body", 2 ** 20),
  requestTimeoutMs: intFlag(f, "timeout-ms", 2000),
});
const url = await server.listen(0, "127.0.0.1");
await model.open();
process.on("SIGTERM", () => {
  void server?.shutdown().then(() => process.exit(0));
});
console.log(`ready: ${url}`);
