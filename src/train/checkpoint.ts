/**
 * Checkpoints of a run directory. `<name>.safetensors` holds the model alone with torchvision's keys (so `vgg infer
 * --weights` and PyTorch read it as it is) and the model's description in its metadata; `<name>.optim.safetensors`
 * holds the momentum buffers and the trainer's state. Both are written atomically (temp file, fsync, rename),
 * weights first: the optimizer file names the step it belongs to, so a crash between the two is detected.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { PresetOptions } from "../data/transforms.js";
import { VggError } from "../errors.js";
import type { StateDict } from "../tensor.js";
import { readSafetensorsFile, writeSafetensors } from "../weights/safetensors.js";
import type { ModelOptions } from "../zoo/model.js";
import type { ScheduleState } from "./schedule.js";

export interface ModelMeta {
  arch: string;
  options: ModelOptions;
  /** Class names, index = label. */
  labels: string[];
  /** Preprocessing the model was trained with. */
  mean: number[];
  std: number[];
  /**
   * The training data's channels and native size (null: images of varying size) and the preset options of the
   * run: `presetTransforms({...data, mean, std}, preset, false)` is its evaluation transform, which `vgg predict`
   * applies to new images. Absent in checkpoints written before it was added.
   */
  data?: { channels: number; size: [number, number] | null };
  preset?: PresetOptions;
}

export interface TrainerState {
  /** Completed epochs. */
  epoch: number;
  /** Completed optimizer steps. */
  step: number;
  schedule: ScheduleState;
  bestValAcc: number;
  bestEpoch: number;
  /** The flags the run started with, for --resume. */
  args: Record<string, unknown>;
}

export function checkpointPaths(dir: string, name: string): { weights: string; optim: string } {
  return { weights: join(dir, `${name}.safetensors`), optim: join(dir, `${name}.optim.safetensors`) };
}

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
  writeSafetensors(p.weights, weights, { format: "vgg-onnx", model: JSON.stringify(model), step });
  if (momentum && state) writeSafetensors(p.optim, momentum, { format: "vgg-onnx-optim", state: JSON.stringify(state), step });
}

export function readModelMeta(path: string): ModelMeta | undefined {
  const meta = readSafetensorsFile(path).metadata;
  if (!meta.model) return undefined;
  try {
    return JSON.parse(meta.model) as ModelMeta;
  } catch {
    throw new VggError("the model description in its metadata is not valid JSON", path);
  }
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
