/**
 * The fuzz worker: a child process (so the parent can kill it on a hang and see a native crash as its exit)
 * that runs one format's readers on the files it is sent, one at a time, with allocation tracking.
 *
 *   parent -> child: { id, file }            child -> parent: { ready: true } once, then a WorkerResult per file
 */
import { performance } from "node:perf_hooks";
import { installAllocTracker, trackStart, trackStop } from "./alloc.js";
import { allocationBound, Crash, TARGETS, takeRejection, warmUp } from "./targets.js";

export interface WorkerResult {
  id: number;
  outcome: "accepted" | "rejected" | "crash";
  /** The crash, or the first VggError's message for a rejection (the file's name replaced by FILE). */
  message?: string;
  stack?: string;
  ms: number;
  maxAlloc: number;
  /** The file's allocation bound, bytes. */
  bound: number;
  /** A VggError message (of any of the readers) that holds line breaks or control characters. */
  garbled?: string;
  /** The largest allocation over the bound and where it was made, if there was one. */
  oversize?: string;
  /** Peak resident set size of this worker so far, in bytes. */
  rss: number;
}

const format = process.argv[2];
const target = TARGETS[format];
if (!target || !process.send) {
  console.error(`fuzz worker: unknown format '${format}' or no IPC channel`);
  process.exit(2);
}
const send = (m: unknown) => process.send?.(m);

async function handle(id: number, file: string): Promise<WorkerResult> {
  const bound = await allocationBound(format, file);
  takeRejection();
  const t0 = performance.now();
  trackStart(bound.bytes, bound.allowance);
  let outcome: WorkerResult["outcome"];
  let message: string | undefined;
  let stack: string | undefined;
  let garbled: string | undefined;
  try {
    outcome = await target(file);
    const r = takeRejection();
    if (outcome === "rejected") message = r.message;
    garbled = r.garbled;
  } catch (err) {
    outcome = "crash";
    if (err instanceof Crash) {
      message = err.detail;
      stack = err.stackText.split("\n").slice(0, 12).join("\n");
    } else {
      message = `harness error: ${(err as Error)?.stack ?? String(err)}`;
    }
  }
  const alloc = trackStop();
  const ms = performance.now() - t0;
  const rss = process.resourceUsage().maxRSS * 1024;
  return { id, outcome, message, stack, ms, maxAlloc: alloc.max, bound: bound.bytes, oversize: alloc.oversize, garbled, rss };
}

installAllocTracker();
await warmUp(format);
let queue = Promise.resolve();
process.on("message", (m: { id: number; file: string }) => {
  queue = queue.then(async () => {
    send(await handle(m.id, m.file));
  });
});
process.on("disconnect", () => process.exit(0));
send({ ready: true });
