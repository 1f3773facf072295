/**
 * `vgg reproduce`'s findings judged by its two rules, on results objects (no training): a finding that rests on a net
 * at chance is not decided and both reports open with a warning naming the nets; a gap within noise is not decided
 * either; and README's sample is what the tool writes for the run it came from.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { chanceRule, chanceWarning, findings, netsAtChance, verdictText } from "../src/reproduce/findings.js";
import { renderHtml } from "../src/reproduce/html.js";
import { findingsMarkdown, renderMarkdown } from "../src/reproduce/markdown.js";
import { PAPER_ROWS } from "../src/reproduce/paper.js";
import type { ConfigName, ConfigResult, Finding, ProtocolName, ReproduceResults } from "../src/reproduce/results.js";
import { ROOT } from "./helpers.js";

const NETS: [ConfigName, string][] = [
  ["A", "36"],
  ["A-LRN", "36"],
  ["B", "36"],
  ["C", "36"],
  ["D", "36"],
  ["E", "36"],
  ["D", "32:48"],
];

/**
 * Seven nets scored on n test images of 10 classes. `err(net, protocol)` gives each top-1 error; every protocol of a
 * net gets the same unless it says otherwise.
 */
function results(n: number, err: (i: number, p: ProtocolName) => number): ReproduceResults {
  const configs: ConfigResult[] = NETS.map(([name, trainScale], i) => {
    const multi = trainScale.includes(":") ? [32, 40, 48] : [32, 36, 40];
    const ev = (protocol: ProtocolName, scales: number[]) => {
      const e = err(i, protocol);
      return { protocol, scales, n, top1: 1 - e, top5: 0.6, top1Error: e, top5Error: 0.4, loss: 2.3, seconds: 1 };
    };
    return {
      name,
      arch: "vgg",
      depth: 11,
      params: 1,
      trainScale,
      initFrom: null,
      trainSeconds: 1,
      epochs: [],
      evals: [ev("single", [multi[1]]), ev("dense", [multi[1]]), ev("dense", multi), ev("multicrop", multi), ev("dense+multicrop", multi)],
      confusion: [],
      worst: [],
    };
  });
  const r: ReproduceResults = {
    version: 1,
    created: "2026-01-01T00:00:00.000Z",
    command: "vgg reproduce --steps 2",
    data: "fashion-mnist",
    classes: Array.from({ length: 10 }, (_, k) => `c${k}`),
    settings: {
      widthDivisor: 16,
      head: "compact",
      batchNorm: true,
      inputSize: 32,
      epochs: 1,
      batchSize: 128,
      lr: 0.05,
      seed: 0,
      budgetMinutes: 90,
      testImages: n,
    },
    wallSeconds: 60,
    configs,
    findings: [],
    paper: PAPER_ROWS,
  };
  r.findings = findings(r);
  return r;
}

const byId = (r: ReproduceResults, id: string): Finding => {
  const f = r.findings.find((x) => x.id === id);
  assert.ok(f, id);
  return f;
};

test("the chance rule: 3 binomial standard errors above 1/K, and at least a tenth of the way to perfect", () => {
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-4, `${a} vs ${b}`);
  close(chanceRule(10, 30).need, 0.1 + 3 * Math.sqrt(0.09 / 30)); // 26.43%: few images, the standard errors decide
  close(chanceRule(10, 1275).need, 0.19); // many images: the tenth of the way decides
  close(chanceRule(2, 100).need, 0.65);
  close(chanceRule(10, 30).chance, 0.1);
});

test("a short run at chance (86-91% error on 10 classes): every finding undecided, both reports warn at the top", () => {
  // The run: dense+multicrop at least as good as both in every run and A-LRN no better than A used to read
  // "agrees: yes"; with every net near 10% top-1 they are differences between guesses.
  const r = results(300, (i, p) => 0.86 + 0.007 * i - (p === "dense+multicrop" ? 0.002 : 0));
  assert.equal(netsAtChance(r).length, 7);
  assert.deepEqual(
    r.findings.map((f) => f.id),
    ["depth", "lrn", "conv1x1", "jitter", "dense-multicrop"],
  );
  for (const f of r.findings) {
    assert.equal(f.agrees, null, f.id);
    assert.match(f.undecided ?? "", /^nets are at chance: .*% top-1, chance 10\.00%$/, f.id);
  }
  assert.equal(verdictText(byId(r, "lrn")), "not decided (nets are at chance: A 14.00%, A-LRN 13.30% top-1, chance 10.00%)");
  assert.equal(byId(r, "jitter").undecided, "nets are at chance: D 11.20%, D (S 32:48) 9.80% top-1, chance 10.00%");

  const md = renderMarkdown(r);
  const lines = md.split("\n");
  assert.equal(lines[0], "# VGG configs A-E on fashion-mnist: the paper's experiments, reproduced");
  assert.match(
    lines[2],
    /^> \*\*Warning:\*\* 7 of 7 nets are not clearly above chance: A 14\.00%, A-LRN 13\.30%, B 12\.60%, C 11\.90%, D 11\.20%, E 10\.50%, D \(S 32:48\) 9\.80% top-1, where chance is 10\.00% on 10 classes and clearly above it means more than 19\.00% on 300 test images\. The findings that rest on them are not decided\. Train longer: more --epochs or a larger --budget-minutes, and no --steps cap\.$/,
  );
  assert.ok(md.indexOf("Warning:") < md.indexOf("\n## "), "the warning comes before the first table");
  assert.match(
    md,
    /^- \*\*Does local response normalisation help \(A vs A-LRN\)\?\*\* Agrees: not decided \(nets are at chance: A 14\.00%, A-LRN 13\.30% top-1, chance 10\.00%\)\.$/m,
  );
  assert.doesNotMatch(md, /Agrees: (yes|no)\./);

  const html = renderHtml(r);
  const top = html.slice(html.indexOf("</h1>"), html.indexOf("<dl>"));
  assert.match(
    top,
    /<p class="warning" id="chance-warning"><strong>Warning:<\/strong> 7 of 7 nets are not clearly above chance: A 14\.00%/,
  );
  assert.match(top, /Train longer: more --epochs/);
  assert.match(
    html,
    /<td class="agree-undecided">not decided \(nets are at chance: A 14\.00%, A-LRN 13\.30% top-1, chance 10\.00%\)<\/td>/,
  );
});

test("one net at chance: only the findings that rest on it are undecided, and the warning names it alone", () => {
  // A-LRN at 12% top-1 on 1000 images (chance 10%, clearly above: 19%); the others at 9% error.
  const r = results(1000, (i) => (i === 1 ? 0.88 : 0.09 + 0.002 * i));
  assert.deepEqual(
    netsAtChance(r).map((x) => x.label),
    ["A-LRN"],
  );
  assert.equal(verdictText(byId(r, "lrn")), "not decided (a net is at chance: A-LRN 12.00% top-1, chance 10.00%)");
  for (const id of ["depth", "conv1x1", "jitter"]) assert.doesNotMatch(byId(r, id).undecided ?? "", /chance/, id);
  // dense+multicrop is judged over every run, A-LRN's too.
  assert.equal(byId(r, "dense-multicrop").undecided, "a net is at chance: A-LRN 12.00% top-1, chance 10.00%");
  assert.match(byId(r, "lrn").ours, /A-LRN's 88\.00% is higher than A's 9\.00%\./);
  assert.equal(
    chanceWarning(r),
    "A net is not clearly above chance: A-LRN 12.00% top-1, where chance is 10.00% on 10 classes and clearly above it means more than 19.00% on 1000 test images. The findings that rest on it are not decided. Train longer: more --epochs or a larger --budget-minutes, and no --steps cap.",
  );
});

test("nets well above chance: gaps within noise are not decided, clear ones are; no warning", () => {
  // 9-10% error on 1000 images: a difference's standard error is about 1.3 points. dense+multicrop 0.2 points under
  // the better of the two in every run used to count as "yes".
  const noise = results(1000, (i, p) => 0.09 + 0.001 * i - (p === "dense+multicrop" ? 0.002 : 0));
  assert.deepEqual(netsAtChance(noise), []);
  assert.equal(chanceWarning(noise), null);
  const dm = byId(noise, "dense-multicrop");
  assert.equal(verdictText(dm), "not decided (within noise)");
  assert.match(dm.ours, /^Both is at least as good as the better of the two for 7 of 7 runs \(beyond noise: better in 0, worse in 0\): /);
  assert.equal(verdictText(byId(noise, "conv1x1")), "not decided (within noise)");
  assert.equal(verdictText(byId(noise, "lrn")), "yes", "the paper's answer is no gain: a gap within noise agrees");
  const md = renderMarkdown(noise);
  assert.doesNotMatch(md, /Warning/);
  assert.doesNotMatch(renderHtml(noise), /class="warning"/);
  assert.match(md, /^- \*\*Does dense \+ multi-crop evaluation beat either alone\?\*\* Agrees: not decided \(within noise\)\.$/m);

  // Both 5 points under the better of the two in every run: beyond noise, agrees.
  const clear = results(1000, (i, p) => (p === "dense+multicrop" ? 0.05 : 0.1) + 0.001 * i);
  assert.equal(verdictText(byId(clear, "dense-multicrop")), "yes");
  assert.match(byId(clear, "dense-multicrop").ours, /beyond noise: better in 7, worse in 0/);
});

test("README's sample findings are, word for word, what the tool writes for the run they came from", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Reproducing the paper"));
  const at = section.indexOf("as `report.md` lists it:\n\n");
  assert.ok(at > 0, "README's sample findings are introduced by 'as `report.md` lists it:'");
  const sample = section.slice(at).split("\n\n")[1].split("\n");
  // The run README's tables and findings come from, judged by the current rules.
  const r = JSON.parse(readFileSync(join(ROOT, "bench", "results", "reproduce-2026-12-02", "results.json"), "utf8")) as ReproduceResults;
  r.findings = findings(r);
  assert.deepEqual(sample, findingsMarkdown(r));
  assert.match(sample.join("\n"), /Agrees: not decided \(within noise\)\./);
  assert.equal(chanceWarning(r), null, "README's run is far above chance");
});
