import assert from "node:assert/strict";
import { test } from "node:test";
import { Schedule } from "../src/train/schedule.js";

test("plateau: /10 after `patience` epochs without improvement, at most maxCuts times", () => {
  const s = new Schedule({ kind: "plateau", lr: 0.01, epochs: 74, patience: 1, maxCuts: 3 });
  assert.equal(s.lrAt(0, 0, 10), 0.01);
  const accs = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7];
  const cuts = accs.map((a) => s.endEpoch(a));
  assert.deepEqual(
    cuts.map((c, k) => (c ? k : -1)).filter((k) => k >= 0),
    [3, 6, 8],
  );
  assert.ok(Math.abs(s.lrAt(20, 0, 10) - 1e-5) < 1e-12);
  // State round-trips through JSON (resume).
  const t = new Schedule(s.o, JSON.parse(JSON.stringify(s.state)));
  assert.equal(t.lrAt(0, 0, 1), s.lrAt(0, 0, 1));
});

test("step and cosine with warm-up", () => {
  const st = new Schedule({ kind: "step", lr: 0.1, epochs: 9, stepSize: 3 });
  assert.deepEqual(
    [0, 2, 3, 6].map((e) => Number(st.lrAt(e, 0, 5).toPrecision(6))),
    [0.1, 0.1, 0.01, 0.001],
  );
  const c = new Schedule({ kind: "cosine", lr: 0.1, epochs: 10, warmup: 1 });
  assert.ok(Math.abs(c.lrAt(0, 0, 100) - 0.001) < 1e-12, "warm-up starts at lr/steps");
  assert.ok(Math.abs(c.lrAt(1, 0, 100) - 0.1) < 1e-12, "peak after warm-up");
  assert.ok(Math.abs(c.lrAt(5, 50, 100) - 0.05) < 1e-9, "half way down at the middle");
  assert.ok(c.lrAt(9, 99, 100) < 1e-4);
  assert.throws(() => new Schedule({ kind: "cosine", lr: 0, epochs: 1 }), /--lr must be positive/);
});
