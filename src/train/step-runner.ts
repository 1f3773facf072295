/**
 * Runs one training step on the step graph's session, with the state as the trainer keeps it (weights and momentum
 * maps), so that the trainer and `vgg bench train` run steps the same way.
 *
 * Where the memory goes (vgg16_bn 224x224 batch 8: 0.5 GB of weights, 0.5 GB of momentum): onnxruntime-node
 * returns every output as a fresh copy in a new ArrayBuffer (it has no zero-copy output, preallocated or not), so a
 * plain session.run holds the state it was fed, ORT's new state and the copies of it at once, 1.5 GB here. So:
 * - ORT writes the new state into the buffers it was fed (`into`): the momentum buffers are the caller's, updated in
 *   place; the weights are buffers of this module's own (see Own), so that the tensors the caller holds never
 *   change (the averages keep some across steps), and the copies the binding returns anyway are handed out as the
 *   new weights. The step graph makes this safe: a momentum buffer is read only by the Mul that starts its update,
 *   and a weight's update waits for the layer's input gradient (train-step.ts, lrAfterBackward).
 * - The caller's map holds the step's own buffers while it runs, and what the last step left (the weights it handed
 *   out, the binding's copies of the momentum) is collected before this one runs rather than when V8 gets to it.
 *   The new state goes into the caller's maps, not into what the step returns: a caller's `const out = await ...`
 *   in a loop stays alive in its async frame through the next step's await (vgg11 at 64x64: 2.83 against 2.31 GB).
 */
import { stepFeeds, type TrainStep } from "../graph/train-step.js";
import { collectGarbage } from "../runtime/open-graph.js";
import type { Session } from "../runtime/session.js";
import type { StateDict, Tensor } from "../tensor.js";

export interface StepBatch {
  x: Tensor;
  y: Tensor;
  lr: number;
  seed: number | bigint;
}

type StepState = Pick<TrainStep, "state" | "frozenInputs">;

/** Below this much state (weights and momentum) a step is short and its garbage small: V8's own pace will do. */
const COLLECT_MIN_BYTES = 256 * 2 ** 20;

/** A weight's buffer that steps write its new value into, how many steps have, and whether one is running. */
interface Own {
  t: Tensor;
  steps: number;
  busy: boolean;
}

/** The weights handed out, each with its buffer and that buffer's step count then: current while they are equal. */
const handedOut = new WeakMap<Tensor, { own: Own; steps: number }>();
/** Own buffers by their tensor (what the caller's map holds while a step runs, and after one that threw). */
const owns = new WeakMap<Tensor, Own>();

/**
 * Runs the step with `weights` and `momentum` as its state, and puts the new state in them: new tensors for the
 * weights and buffers (the tensors replaced are not changed), the momentum tensors overwritten. Returns the other
 * outputs (loss, correct1, correct5, logits). `inPlace: false` (WebGPU) lets ORT allocate the new state. A step
 * that throws may leave `weights` holding the step's own buffers (the last checkpoint holds the good ones).
 */
export async function runTrainStep(
  session: Session,
  step: StepState,
  weights: StateDict,
  momentum: StateDict,
  batch: StepBatch,
  inPlace = true,
): Promise<Record<string, Tensor>> {
  const own = inPlace ? takeWeights(step, weights) : new Map<string, Own>();
  if (stateBytes(weights) + stateBytes(momentum) >= COLLECT_MIN_BYTES) await collectGarbage();
  const feeds = stepFeeds(step, weights, momentum, batch);
  let out: Record<string, Tensor>;
  try {
    out = await session.run(feeds, undefined, inPlace ? intoFeeds(step, feeds) : undefined);
  } finally {
    for (const o of own.values()) o.busy = false;
  }
  if (inPlace) handOut(step, out, feeds, own);
  for (const e of step.state) {
    (e.kind === "momentum" ? momentum : weights).set(e.input, out[e.output]);
    delete out[e.output];
  }
  return out;
}

/** Puts each weight's own buffer in `weights` in place of the tensor there, copying that in when it is not current. */
function takeWeights(step: StepState, weights: StateDict): Map<string, Own> {
  const taken = new Map<string, Own>();
  for (const e of step.state) {
    const t = weights.get(e.input);
    if (e.kind !== "param" || !t) continue;
    const own = ownOf(t);
    own.busy = true;
    taken.set(e.input, own);
    weights.set(e.input, own.t);
  }
  return taken;
}

/** The buffer `t`'s values are in, when it is current and no step is writing it; else a new one with them. */
function ownOf(t: Tensor): Own {
  const h = handedOut.get(t);
  if (h && h.steps === h.own.steps && !h.own.busy) return h.own;
  const mine = owns.get(t);
  if (mine && !mine.busy) return mine;
  const own = { t: { ...t, data: t.data.slice() }, steps: 0, busy: false };
  owns.set(own.t, own);
  return own;
}

/** Every new weight and momentum buffer written into the one fed. */
function intoFeeds(step: StepState, feeds: Record<string, Tensor>): Record<string, Tensor> {
  const into: Record<string, Tensor> = {};
  for (const e of step.state) if (e.kind !== "buffer") into[e.output] = feeds[e.input];
  return into;
}

/** The state as the caller keeps it: the momentum fed (now the new one), the binding's copies of the weights. */
function handOut(step: StepState, out: Record<string, Tensor>, feeds: Record<string, Tensor>, own: Map<string, Own>): void {
  for (const e of step.state) {
    if (e.kind === "momentum") out[e.output] = feeds[e.input];
    const o = own.get(e.input);
    if (e.kind !== "param" || !o) continue;
    o.steps++;
    // A binding that returns the preallocated tensor itself (onnxruntime-web does) would hand out the buffer.
    const t = out[e.output].data === o.t.data ? { ...o.t, data: o.t.data.slice() } : out[e.output];
    handedOut.set(t, { own: o, steps: o.steps });
    out[e.output] = t;
  }
}

function stateBytes(sd: StateDict): number {
  let n = 0;
  for (const t of sd.values()) n += t.data.byteLength;
  return n;
}
