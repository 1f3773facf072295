/**
 * The demo page's inference thread: the model's onnxruntime-web session (WebGPU or WASM) lives here, so a long run
 * (VGG16 on WASM takes a good part of a second) never freezes the page.
 */
import { configureRuntime, createSession, type WebSession } from "../../src/runtime/ort-web.js";
import type { Tensor } from "../../src/tensor.js";
import type { FromInfer, ToInfer } from "./infer-protocol.js";

let session: WebSession | null = null;
let queue: Promise<void> = Promise.resolve();
const post = (m: FromInfer, transfer: Transferable[] = []) => postMessage(m, { transfer });

async function handle(m: ToInfer): Promise<void> {
  if (m.type === "open") {
    const rt = configureRuntime({ wasmPaths: m.wasmPaths });
    session = await createSession(new Uint8Array(m.model), { freeDimensions: m.freeDimensions });
    post({
      type: "ready",
      id: m.id,
      backend: session.backend,
      fallbackReason: session.fallbackReason,
      threads: rt.threads,
      version: rt.version,
      crossOriginIsolated: rt.crossOriginIsolated,
    });
    return;
  }
  if (!session) throw new Error("no model yet");
  const outputs: Record<string, Tensor> = await session.run(m.feeds);
  post(
    { type: "outputs", id: m.id, outputs },
    Object.values(outputs).map((t) => t.data.buffer as ArrayBuffer),
  );
}

addEventListener("message", (ev: MessageEvent<ToInfer>) => {
  const m = ev.data;
  queue = queue.then(() =>
    handle(m).catch((err: unknown) => post({ type: "error", id: m.id, message: err instanceof Error ? err.message : String(err) })),
  );
});
