/** Classification metrics from logits: mean cross-entropy, top-1/top-5 hits, confusion counts. */
export interface Tally {
  n: number;
  lossSum: number;
  top1: number;
  top5: number;
  /** confusion[true * K + predicted] */
  confusion: Uint32Array;
  classes: number;
}

export function newTally(classes: number): Tally {
  return { n: 0, lossSum: 0, top1: 0, top5: 0, confusion: new Uint32Array(classes * classes), classes };
}

/** Add a batch of logits [n, K] with labels; returns each sample's softmax probabilities' max and argmax. */
export function addBatch(t: Tally, logits: Float32Array, labels: ArrayLike<number | bigint>, n: number): void {
  const K = t.classes;
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * K, (i + 1) * K);
    const y = Number(labels[i]);
    let max = Number.NEGATIVE_INFINITY;
    let arg = 0;
    for (let k = 0; k < K; k++) {
      if (row[k] > max) {
        max = row[k];
        arg = k;
      }
    }
    let sum = 0;
    for (let k = 0; k < K; k++) sum += Math.exp(row[k] - max);
    t.lossSum += Math.log(sum) + max - row[y];
    // Rank of the true class: ties count against it, so a constant output scores no hits.
    let above = 0;
    for (let k = 0; k < K; k++) if (k !== y && row[k] >= row[y]) above++;
    if (above === 0) t.top1++;
    if (above < 5) t.top5++;
    t.confusion[y * K + arg]++;
    t.n++;
  }
}

export interface Scores {
  n: number;
  loss: number;
  top1: number;
  top5: number;
  top1Error: number;
  top5Error: number;
}

export function scores(t: Tally): Scores {
  const n = Math.max(t.n, 1);
  return { n: t.n, loss: t.lossSum / n, top1: t.top1 / n, top5: t.top5 / n, top1Error: 1 - t.top1 / n, top5Error: 1 - t.top5 / n };
}
