/**
 * Decode-and-preprocess thread of `vgg predict`: the PIL-exact resize runs in JavaScript, and on the main thread
 * it would wait for each engine run to end (session.run holds that thread). Here it overlaps with the engine.
 */
import { parentPort } from "node:worker_threads";
import { VggError } from "../errors.js";
import type { DecodeReply, DecodeRequest } from "./decode-pool.js";
import { loadImage } from "./preprocess.js";

const port = parentPort;
if (!port) throw new Error("src/predict/decode-worker.js runs as a worker thread of vgg predict");

port.on("message", async (m: DecodeRequest | { type: "close" }) => {
  if ("type" in m) return port.close();
  try {
    const img = await loadImage(m.file, m.preprocessing);
    const data = img.data as Float32Array;
    const reply: DecodeReply = { id: m.id, data, c: img.c, h: img.h, w: img.w };
    port.postMessage(reply, [data.buffer as ArrayBuffer]);
  } catch (err) {
    const reply: DecodeReply =
      err instanceof VggError
        ? { id: m.id, error: err.message, file: err.file }
        : { id: m.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err), internal: true };
    port.postMessage(reply);
  }
});
