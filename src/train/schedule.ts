/**
 * Learning-rate schedules. The paper's: divide by 10 when validation accuracy stops improving (it did so three
 * times in 74 epochs); also step decay and cosine with linear warm-up. State is plain JSON so a resumed run
 * continues with exactly the same rate.
 */
import { VggError } from "../errors.js";

export type ScheduleKind = "plateau" | "step" | "cosine";
export const SCHEDULES: ScheduleKind[] = ["plateau", "step", "cosine"];

export interface ScheduleOptions {
  kind: ScheduleKind;
  lr: number;
  epochs: number;
  /** plateau: epochs without improvement before a cut (as ReduceLROnPlateau's patience). */
  patience?: number;
  /** plateau: at most this many cuts (the paper made 3). */
  maxCuts?: number;
  /** step: cut every this many epochs. */
  stepSize?: number;
  /** plateau and step: multiply by this at a cut. */
  factor?: number;
  /** cosine: linear warm-up epochs. */
  warmup?: number;
}

export interface ScheduleState {
  /** The plateau schedule's current rate. */
  lr: number;
  best: number;
  badEpochs: number;
  cuts: number;
}

export class Schedule {
  readonly o: Required<ScheduleOptions>;
  state: ScheduleState;

  constructor(o: ScheduleOptions, state?: ScheduleState) {
    if (!SCHEDULES.includes(o.kind)) throw new VggError(`--schedule must be one of ${SCHEDULES.join(", ")}, got '${o.kind}'`);
    if (!(o.lr > 0)) throw new VggError(`--lr must be positive, got ${o.lr}`);
    this.o = {
      patience: 2,
      maxCuts: 3,
      stepSize: Math.max(1, Math.round(o.epochs / 3)),
      factor: 0.1,
      warmup: o.kind === "cosine" ? Math.min(1, o.epochs) : 0,
      // Unset fields keep their defaults (a spread would overwrite them with undefined).
      ...(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as ScheduleOptions),
    };
    this.state = state ?? { lr: o.lr, best: Number.NEGATIVE_INFINITY, badEpochs: 0, cuts: 0 };
  }

  /** The rate for step `k` of `n` in epoch `epoch` (0-based). */
  lrAt(epoch: number, k: number, n: number): number {
    const o = this.o;
    if (o.kind === "plateau") return this.state.lr;
    if (o.kind === "step") return o.lr * o.factor ** Math.floor(epoch / o.stepSize);
    const t = epoch + k / n;
    if (t < o.warmup) return (o.lr * (t + 1 / n)) / o.warmup;
    const span = Math.max(o.epochs - o.warmup, 1e-9);
    return 0.5 * o.lr * (1 + Math.cos((Math.PI * Math.min(t - o.warmup, span)) / span));
  }

  /** Report the epoch's validation accuracy; returns true when the plateau schedule cut the rate. */
  endEpoch(valAcc: number): boolean {
    const s = this.state;
    // ReduceLROnPlateau's default relative threshold: an improvement must beat the best by 1e-4 of it.
    if (valAcc > s.best * (1 + 1e-4) || s.best === Number.NEGATIVE_INFINITY) {
      s.best = valAcc;
      s.badEpochs = 0;
      return false;
    }
    s.badEpochs++;
    if (this.o.kind === "plateau" && s.badEpochs > this.o.patience && s.cuts < this.o.maxCuts) {
      s.lr *= this.o.factor;
      s.cuts++;
      s.badEpochs = 0;
      return true;
    }
    return false;
  }
}
