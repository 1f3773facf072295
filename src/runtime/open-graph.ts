/**
 * A ModelSpec to an ONNX Runtime session. Small graphs go to ORT as bytes; past IN_MEMORY_LIMIT the graph goes
 * through a temporary directory with the initializers as external-data files, so JS and ORT never hold the
 * weights at once (the caller drops its references before `open`).
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { encodeModel, encodeModelParts, type ModelSpec } from "../onnx/encode.js";
import { createSession, type Session, type SessionOptions } from "./ort.js";

/** Past this size the graph goes to ORT through files. */
export const IN_MEMORY_LIMIT = 64 * 2 ** 20;

export interface Compiled {
  bytes?: Uint8Array;
  path?: string;
  dir?: string;
}

export function specBytes(spec: ModelSpec): number {
  return spec.initializers.reduce((n, i) => n + i.tensor.data.byteLength, 0);
}

export function compileSpec(spec: ModelSpec): Compiled {
  if (specBytes(spec) < IN_MEMORY_LIMIT) return { bytes: encodeModel(spec) };
  const dir = mkdtempSync(join(tmpdir(), "vgg-onnx-"));
  const { parts, external } = encodeModelParts(spec, { externalMinBytes: 4096 });
  const path = join(dir, "model.onnx");
  writeChunks(path, parts);
  for (const e of external) writeChunks(join(dir, e.path), [e.data]);
  return { path, dir };
}

export async function openCompiled(c: Compiled, opts: SessionOptions = {}): Promise<Session> {
  if (c.bytes) return createSession(c.bytes, opts);
  await collectGarbage();
  try {
    return await createSession(c.path as string, opts);
  } finally {
    rmSync(c.dir as string, { recursive: true, force: true });
  }
}

function writeChunks(path: string, parts: Uint8Array[]): void {
  const fd = openSync(path, "w");
  try {
    for (const p of parts) writeSync(fd, p);
  } finally {
    closeSync(fd);
  }
}

/**
 * Return the dropped weights' ArrayBuffers to the OS now rather than at V8's leisure (peak RSS). A full GC finds
 * them, but their memory is released by a second one after the current task (measured: one synchronous gc()
 * frees nothing of 528 MB of dropped weights; gc, setImmediate, gc frees all).
 */
export async function collectGarbage(): Promise<void> {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (() => void) | undefined;
  if (!gc) return;
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
}
