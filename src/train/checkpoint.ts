/**
 * Checkpoints of a run directory. `<name>.safetensors` holds the model alone with torchvision's keys (so `vgg infer
 * --weights` and PyTorch read it as it is) and the model's description in its metadata; `<name>.optim.safetensors`
 * holds the momentum buffers and the trainer's state. Both name the step they belong to.
 *
 * Every file is written atomically (temp file, fsync, rename), and the pair is committed so that a crash at any
 * moment leaves a resumable checkpoint, the previous one or the new one:
 *   1. the optimizer file is written (atomically) as `<name>.optim.safetensors.pending`;
 *   2. the weights are written (atomically) over `<name>.safetensors`: this is the commit point;
 *   3. the pending file is renamed over `<name>.optim.safetensors`.
 * A crash before 2 leaves the old pair and a stray pending file; a crash between 2 and 3 leaves new weights, the
 * old optimizer file and the new one pending: recoverCheckpoint() (run under the run's lock before resuming)
 * finishes step 3 in the second case and removes the pending file in the first, along with stray temp files.
 */
import { existsSync, readdirSync, renameSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { VggError } from "../errors.js";
import { fsError, syncDir, TEMP_FILE, testPause, withFile } from "../io/atomic.js";
import type { StateDict } from "../tensor.js";
import type { ModelMeta } from "../weights/model-meta.js";
import { readSafetensorsFile, writeSafetensors } from "../weights/safetensors.js";
import type { TrainerState } from "./types.js";

export function checkpointPaths(dir: string, name: string): { weights: string; optim: string } {
  return { weights: join(dir, `${name}.safetensors`), optim: join(dir, `${name}.optim.safetensors`) };
}

function pendingPath(optim: string): string {
  return `${optim}.pending`;
}

/** The error of a failed write, naming `file` (the checkpoint's real name, not a temp file's). */
function writeError(file: string, err: unknown): VggError {
  const msg =
    err instanceof VggError && err.file ? err.message.slice(err.file.length + 2) : err instanceof Error ? err.message : String(err);
  return new VggError(msg, file);
}

/**
 * Writes the checkpoint `name` (see the commit protocol above). On failure (full disk, file-size limit) the
 * previous checkpoint is left as it was, no temp file is left behind, and the VggError names the file.
 */
export function saveCheckpoint(
  dir: string,
  name: string,
  weights: StateDict,
  model: ModelMeta,
  momentum?: StateDict,
  state?: TrainerState,
): void {
  const p = checkpointPaths(dir, name);
  const step = String(state?.step ?? 0);
  const meta = { format: "vgg-onnx", model: JSON.stringify(model), step };
  if (!(momentum && state)) {
    try {
      writeSafetensors(p.weights, weights, meta);
    } catch (err) {
      throw writeError(p.weights, err);
    }
    return;
  }
  const pending = pendingPath(p.optim);
  try {
    writeSafetensors(pending, momentum, { format: "vgg-onnx-optim", state: JSON.stringify(state), step });
  } catch (err) {
    throw writeError(p.optim, err);
  }
  try {
    writeSafetensors(p.weights, weights, meta);
  } catch (err) {
    try {
      unlinkSync(pending);
    } catch {
      // the old pair is intact either way
    }
    throw writeError(p.weights, err);
  }
  testPause();
  try {
    renameSync(pending, p.optim);
  } catch (err) {
    throw writeError(p.optim, err);
  }
  syncDir(dir);
}

/** The `step` in a safetensors file's metadata, read from its header alone; undefined if unreadable. */
function stepOf(file: string): string | undefined {
  try {
    return withFile(file, (f) => {
      const n = Number(new DataView(f.read(0, 8).buffer).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(f.read(8, n))) as { __metadata__?: { step?: string } };
      return header.__metadata__?.step;
    });
  } catch {
    return undefined;
  }
}

/**
 * Brings the run directory to a consistent state after a crash (call it holding the run's lock): finishes or
 * drops a half-committed checkpoint and removes temp files of interrupted atomic writes. Returns what it did.
 */
export function recoverCheckpoint(dir: string, name = "last"): string[] {
  const done: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return done;
  }
  for (const f of names) {
    const m = TEMP_FILE.exec(f);
    // Lock temp files belong to lock.ts, which removes them only when their writer is gone.
    if (!m || m[1] === "lock") continue;
    try {
      unlinkSync(join(dir, f));
      done.push(`removed the temp file ${f} of an interrupted write`);
    } catch {
      // gone already
    }
  }
  const p = checkpointPaths(dir, name);
  const pending = pendingPath(p.optim);
  if (existsSync(pending)) {
    const ps = stepOf(pending);
    const ws = existsSync(p.weights) ? stepOf(p.weights) : undefined;
    const os = existsSync(p.optim) ? stepOf(p.optim) : undefined;
    try {
      if (ps !== undefined && ps === ws && os !== ps) {
        renameSync(pending, p.optim);
        done.push(`completed the interrupted checkpoint of step ${ps}`);
      } else {
        unlinkSync(pending);
        done.push(`dropped the unfinished checkpoint of step ${ps ?? "?"}`);
      }
    } catch (err) {
      throw fsError(pending, err, "recover the checkpoint");
    }
    syncDir(dir);
  }
  return done;
}

export interface Checkpoint {
  weights: StateDict;
  model: ModelMeta;
  momentum: StateDict;
  state: TrainerState;
}

export function loadCheckpoint(dir: string, name: string): Checkpoint {
  const p = checkpointPaths(dir, name);
  for (const f of [p.weights, p.optim]) if (!existsSync(f)) throw new VggError("no checkpoint to resume from", f);
  const w = readSafetensorsFile(p.weights);
  const o = readSafetensorsFile(p.optim);
  if (w.metadata.step !== o.metadata.step) {
    throw new VggError(`weights are of step ${w.metadata.step}, optimizer state of step ${o.metadata.step} (interrupted write?)`, p.optim);
  }
  let model: ModelMeta;
  let state: TrainerState;
  try {
    model = JSON.parse(w.metadata.model ?? "");
    state = JSON.parse(o.metadata.state ?? "");
  } catch {
    throw new VggError("checkpoint metadata is not valid JSON", p.optim);
  }
  return { weights: w.tensors, model, momentum: o.tensors, state };
}
