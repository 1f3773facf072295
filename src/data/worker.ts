/**
 * Loader worker: builds batches on request and hands them back by transferring their buffers. Requests are
 * served one at a time, in arrival order, so memory stays bounded by the loader's prefetch depth.
 */
import { parentPort } from "node:worker_threads";
import { VggError } from "../errors.js";
import { BatchBuilder } from "./batch.js";
import type { FromWorker, ToWorker } from "./loader.js";

const port = parentPort;
if (!port) throw new Error("src/data/worker.js runs as a worker thread of the batch loader");

let builder: BatchBuilder | null = null;
let initError: unknown = null;
let queue: Promise<void> = Promise.resolve();

function fail(id: number, err: unknown): void {
  const msg: FromWorker = {
    type: "error",
    id,
    message:
      err instanceof VggError && err.file ? err.message.slice(err.file.length + 2) : err instanceof Error ? err.message : String(err),
    file: err instanceof VggError ? err.file : undefined,
    stack: err instanceof VggError ? undefined : err instanceof Error ? err.stack : undefined,
  };
  port!.postMessage(msg);
}

let closing = false;

port.on("message", (m: ToWorker) => {
  if (m.type === "close") {
    // Let a decode in progress finish (terminating a thread inside libvips can take the process down with it),
    // drop the queued requests, then let the thread end on its own.
    closing = true;
    queue = queue.then(() => port.close());
    return;
  }
  if (m.type === "init") {
    try {
      builder = new BatchBuilder(m.source, m.transforms, m.seed, m.shape);
    } catch (err) {
      initError = err;
    }
    return;
  }
  queue = queue.then(async () => {
    if (closing) return;
    try {
      if (!builder) throw initError ?? new Error("worker received a batch request before init");
      const { x, y } = await builder.build(m.epoch, m.indices);
      const out: FromWorker = { type: "batch", id: m.id, x, y };
      port.postMessage(out, [x.buffer as ArrayBuffer, y.buffer as ArrayBuffer]);
    } catch (err) {
      fail(m.id, err);
    }
  });
});
