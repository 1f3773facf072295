/** Soft-max posteriors and the k most probable classes. */

export interface ClassScore {
  index: number;
  label: string;
  probability: number;
}

/** Soft-max of one row of logits, in float64 (max subtracted first, so large logits do not overflow). */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp(logits[i] - max);
    sum += p[i];
  }
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return p;
}

/** The k most probable classes, most probable first (ties: lower index first). */
export function topK(probs: ArrayLike<number>, k: number, labels?: readonly string[]): ClassScore[] {
  const idx = Array.from({ length: probs.length }, (_, i) => i);
  idx.sort((a, b) => probs[b] - probs[a] || a - b);
  return idx
    .slice(0, Math.max(0, Math.min(k, probs.length)))
    .map((i) => ({ index: i, label: labels?.[i] ?? String(i), probability: probs[i] }));
}
