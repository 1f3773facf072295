/** The divergence guard: a run that blows up stops with the last good checkpoint kept, never overwritten. */
import { existsSync } from "node:fs";
import { VggError } from "../errors.js";
import type { StateDict } from "../tensor.js";

/** What a failed run leaves: "the last good checkpoint FILE is kept", or that none was written yet. */
export function keptNote(file: string, kept = `the last good checkpoint ${file}`): string {
  return existsSync(file) ? `${kept} is kept` : "no checkpoint was written yet";
}

/**
 * Stops a diverging run: a NaN or Inf loss, or (over full batches, once 20 are recorded) a loss above 10x the
 * running median of the last 50 and above 5. `recent` is null for a partial batch, checked for NaN/Inf only.
 */
export function guardDivergence(loss: number, recent: number[] | null, step: number, epoch: number, lr: number, last: string): void {
  const sorted = [...(recent ?? [])].sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1];
  const exploding = recent !== null && recent.length >= 20 && loss > 10 * median && loss > 5;
  if (!Number.isFinite(loss) || exploding) {
    throw new VggError(
      `training diverged at step ${step + 1} (epoch ${epoch + 1}): loss ${loss} with learning rate ${lr.toPrecision(3)}${exploding ? ` (running median ${median.toFixed(4)})` : ""}; ${keptNote(last)}; try a lower --lr`,
    );
  }
  if (!recent) return;
  recent.push(loss);
  if (recent.length > 50) recent.shift();
}

/** A finite loss can hide a blown-up BN statistic or weight: checked before every checkpoint. */
export function assertFinite(weights: StateDict, epoch: number, lr: number, last: string): void {
  const bad = firstNonFinite(weights);
  if (!bad) return;
  throw new VggError(
    `training diverged in epoch ${epoch + 1}: '${bad}' holds NaN or Inf with learning rate ${lr.toPrecision(3)}; ${keptNote(last)}; try a lower --lr`,
  );
}

function firstNonFinite(sd: StateDict): string | undefined {
  for (const [k, t] of sd) {
    if (t.dtype !== "float32") continue;
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return k;
  }
  return undefined;
}
