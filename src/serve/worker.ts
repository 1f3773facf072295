/**
 * The inference thread of one served model (engine.ts): opens the session, then runs requests one at a time in
 * arrival order and hands the outputs back by transfer.
 */
import { parentPort } from "node:worker_threads";
import { VggError } from "../errors.js";
import { openCompiled } from "../runtime/open-graph.js";
import { createSession, type Session } from "../runtime/ort.js";
import { type FromEngine, type ToEngine, transferables } from "./engine.js";

const port = parentPort;
if (!port) throw new Error("src/serve/worker.js runs as a worker thread of `vgg serve`");

let session: Session | null = null;
let queue: Promise<void> = Promise.resolve();

function errorOf(id: number, err: unknown): FromEngine {
  const file = err instanceof VggError ? err.file : undefined;
  const message = err instanceof Error ? err.message : String(err);
  return { type: "error", id, message: file && message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message, file };
}

async function handle(m: ToEngine): Promise<void> {
  if (m.type === "open") {
    try {
      const opts = { threads: m.threads, device: m.device };
      session = "file" in m.model ? await createSession(m.model.file, opts) : await openCompiled(m.model.compiled, opts);
      port!.postMessage({ type: "ready", inputNames: [...session.inputNames], outputNames: [...session.outputNames] } satisfies FromEngine);
    } catch (err) {
      port!.postMessage(errorOf(0, err));
    }
  } else if (m.type === "run") {
    try {
      if (!session) throw new Error("no session");
      const outputs = await session.run(m.feeds);
      port!.postMessage({ type: "result", id: m.id, outputs } satisfies FromEngine, transferables(outputs));
    } catch (err) {
      port!.postMessage(errorOf(m.id, err));
    }
  } else {
    await session?.release();
    session = null;
    port!.close();
  }
}

port.on("message", (m: ToEngine) => {
  queue = queue.then(() => handle(m));
});
