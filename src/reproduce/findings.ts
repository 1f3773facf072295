/**
 * The paper's questions, answered from our numbers by two rules (README's "Reproducing the paper" states them too):
 * - Noise: a gap between two top-1 error rates on n test images is noise when it is under the standard error of a
 *   difference of two rates, sqrt(2 p (1 - p) / n) with p their mean. That treats the two as independent samples;
 *   the nets are scored on the same images, so it errs towards calling a gap noise.
 * - Chance: a net is clearly above chance on K classes when its single-scale top-1 accuracy exceeds 1/K by more than
 *   both three binomial standard errors at chance, 3 sqrt((1/K) (1 - 1/K) / n), and a tenth of the way from chance to
 *   perfect, (1 - 1/K) / 10: 19% on 10 classes however many test images (the second stops a barely trained net from
 *   passing only because many test images make a small lead significant). Gaps between nets at chance are gaps
 *   between guesses, so a finding that rests on any such net is not decided, whatever its gaps.
 */
import type { ConfigName, ConfigResult, Finding, ProtocolName, ReproduceResults } from "./results.js";

const pc = (x: number) => `${(100 * x).toFixed(2)}%`;

/** How a net is named in findings and warnings: its config, and its training scale when jittered (D and D (S 32:48)). */
export const netLabel = (c: ConfigResult): string => (c.trainScale.includes(":") ? `${c.name} (S ${c.trainScale})` : c.name);

/** Chance top-1 on K classes and the accuracy a net must exceed, on n test images, to be clearly above it. */
export function chanceRule(K: number, n: number): { chance: number; need: number } {
  const chance = 1 / K;
  return { chance, need: chance + Math.max(3 * Math.sqrt((chance * (1 - chance)) / Math.max(1, n)), (1 - chance) / 10) };
}

export interface NetAtChance {
  config: ConfigResult;
  label: string;
  /** Single-scale top-1 accuracy. */
  top1: number;
  n: number;
  chance: number;
  need: number;
}

/** The nets whose single-scale top-1 is not clearly above chance (nets without a single-scale score are not judged). */
export function netsAtChance(r: ReproduceResults): NetAtChance[] {
  const K = r.classes.length;
  if (K < 2) return [];
  return r.configs.flatMap((c) => {
    const e = c.evals.find((x) => x.protocol === "single" && x.scales.length === 1);
    if (!e) return [];
    const { chance, need } = chanceRule(K, e.n);
    return e.top1 > need ? [] : [{ config: c, label: netLabel(c), top1: e.top1, n: e.n, chance, need }];
  });
}

/** "a net is at chance: A 12.30% top-1, chance 10.00%" (the undecided reason of a finding). */
function atChanceText(low: NetAtChance[]): string {
  const nets = low.map((x) => `${x.label} ${pc(x.top1)}`).join(", ");
  return `${low.length === 1 ? "a net is" : "nets are"} at chance: ${nets} top-1, chance ${pc(low[0].chance)}`;
}

/** The line reports put at their top when any net is at chance (null when none is). */
export function chanceWarning(r: ReproduceResults): string | null {
  const low = netsAtChance(r);
  if (!low.length) return null;
  const need = Math.max(...low.map((x) => x.need));
  const n = Math.min(...low.map((x) => x.n));
  return (
    `${low.length === 1 ? "A net is" : `${low.length} of ${r.configs.length} nets are`} not clearly above chance: ` +
    `${low.map((x) => `${x.label} ${pc(x.top1)}`).join(", ")} top-1, where chance is ${pc(low[0].chance)} on ${r.classes.length} classes ` +
    `and clearly above it means more than ${pc(need)} on ${n} test images. The findings that rest on ${low.length === 1 ? "it" : "them"} ` +
    "are not decided. Train longer: more --epochs or a larger --budget-minutes, and no --steps cap."
  );
}

/** A finding's answer in words: yes, no, or not decided and why. */
export const verdictText = (f: Pick<Finding, "agrees" | "undecided">): string =>
  f.agrees === null ? `not decided${f.undecided ? ` (${f.undecided})` : ""}` : f.agrees ? "yes" : "no";

function err(
  r: ReproduceResults,
  name: ConfigName,
  protocol: ProtocolName,
  multi: boolean,
  jittered = false,
): { e: number; c: ConfigResult } | null {
  const c = r.configs.find((x) => x.name === name && x.trainScale.includes(":") === jittered);
  const e = c?.evals.find((x) => x.protocol === protocol && x.scales.length > 1 === multi);
  return c && e ? { e: e.top1Error, c } : null;
}

export function findings(r: ReproduceResults): Finding[] {
  const n = Math.max(1, r.settings.testImages);
  const se = (a: number, b: number) => Math.sqrt((2 * ((a + b) / 2) * (1 - (a + b) / 2)) / n);
  const cmp = (a: number, b: number) => (b < a - se(a, b) ? "lower than" : b > a + se(a, b) ? "higher than" : "within noise of");
  const low = netsAtChance(r);
  // A finding's verdict: undecided when a net it rests on is at chance, else its answer from the gaps (null: noise).
  const judge = (nets: ConfigResult[], agrees: boolean | null, why = "within noise"): Pick<Finding, "agrees" | "undecided"> => {
    const bad = low.filter((x) => nets.includes(x.config));
    if (bad.length) return { agrees: null, undecided: atChanceText(bad) };
    return agrees === null ? { agrees: null, undecided: why } : { agrees };
  };
  const out: Finding[] = [];
  const single = (name: ConfigName) => err(r, name, "single", false) ?? undefined;

  const depth = (["A", "B", "D", "E"] as ConfigName[]).flatMap((k) => {
    const s = single(k);
    return s ? [[k, s] as const] : [];
  });
  if (depth.length >= 2) {
    const [a, b, d, e] = ["A", "B", "D", "E"].map((k) => depth.find(([x]) => x === k)?.[1].e);
    const deep = Math.min(d ?? 1, e ?? 1);
    const missing = a === undefined || b === undefined || (d === undefined && e === undefined);
    out.push({
      id: "depth",
      question: "Does depth help (A < B < D/E in accuracy)?",
      paper: "Yes: top-1 error falls from 29.6% (A, 11 layers) to 28.7% (B, 13) and 27.0% (D, 16); E (19) saturates at 27.3%.",
      ours: `Single-scale top-1 error: ${depth.map(([k, v]) => `${k} ${pc(v.e)}`).join(", ")} (standard error of a difference about ${pc(se(depth[0][1].e, depth[depth.length - 1][1].e))}).`,
      // Deeper must be lower by more than the noise at each step to agree; higher by more than it to disagree.
      ...judge(
        depth.map(([, v]) => v.c),
        missing ? null : b < a - se(a, b) && deep < b - se(b, deep) ? true : b > a + se(a, b) || deep > b + se(b, deep) ? false : null,
        missing ? "needs A, B and D or E" : undefined,
      ),
    });
  }
  const a = single("A");
  const lrn = single("A-LRN");
  if (a && lrn) {
    out.push({
      id: "lrn",
      question: "Does local response normalisation help (A vs A-LRN)?",
      paper: "No: A-LRN's 29.7% is no better than A's 29.6%, so the deeper nets were built without LRN.",
      ours: `A-LRN's ${pc(lrn.e)} is ${cmp(a.e, lrn.e)} A's ${pc(a.e)}.`,
      // The paper's answer is "no gain": a gap within noise agrees with it, as long as both nets learned something.
      ...judge([a.c, lrn.c], !(lrn.e < a.e - se(a.e, lrn.e))),
    });
  }
  const c = single("C");
  const d = single("D");
  if (c && d) {
    out.push({
      id: "conv1x1",
      question: "Do 1x1 convolutions help less than 3x3 ones (C vs D, same depth)?",
      paper: "Yes: C (1x1 in blocks 3-5) 28.1% against D (3x3) 27.0%: spatial context matters, not only the added non-linearity.",
      ours: `D's ${pc(d.e)} is ${cmp(c.e, d.e)} C's ${pc(c.e)}.`,
      ...judge([c.c, d.c], d.e < c.e - se(c.e, d.e) ? true : d.e > c.e + se(c.e, d.e) ? false : null),
    });
  }
  const jit = r.configs.find((x) => x.trainScale.includes(":"));
  if (jit) {
    const fixed = err(r, jit.name, "single", false);
    const jj = err(r, jit.name, "single", false, true);
    const fd = err(r, jit.name, "dense", true);
    const jd = err(r, jit.name, "dense", true, true);
    if (fixed && jj) {
      out.push({
        id: "jitter",
        question: `Does scale jittering at training help (${jit.name} at fixed S vs S in [Smin, Smax])?`,
        paper: "Yes: D 27.0% at S = 256 against 25.6% with S in [256, 512] (single scale), 26.6% vs 24.8% multi-scale.",
        ours: `${jit.name} single-scale ${pc(fixed.e)} (S ${fixed.c.trainScale}) vs ${pc(jj.e)} (S ${jj.c.trainScale})${fd && jd ? `; multi-scale dense ${pc(fd.e)} vs ${pc(jd.e)}` : ""}.`,
        ...judge([fixed.c, jj.c], jj.e < fixed.e - se(fixed.e, jj.e) ? true : jj.e > fixed.e + se(fixed.e, jj.e) ? false : null),
      });
    }
  }
  const rows = r.configs.flatMap((cfg) => {
    const g = (p: ProtocolName) => cfg.evals.find((e) => e.protocol === p && e.scales.length > 1)?.top1Error;
    const [dn, mc, both] = [g("dense"), g("multicrop"), g("dense+multicrop")];
    return dn !== undefined && mc !== undefined && both !== undefined ? [{ cfg, dn, mc, both, best: Math.min(dn, mc) }] : [];
  });
  if (rows.length) {
    const wins = rows.filter((x) => x.both <= x.best).length;
    // Per run, both against the better of the two, by the same noise rule as every other gap.
    const better = rows.filter((x) => x.both < x.best - se(x.best, x.both)).length;
    const worse = rows.filter((x) => x.both > x.best + se(x.best, x.both)).length;
    out.push({
      id: "dense-multicrop",
      question: "Does dense + multi-crop evaluation beat either alone?",
      paper: "Yes, slightly: D 24.8% dense, 24.6% multi-crop, 24.4% both (complementary boundary treatment).",
      ours: `Both is at least as good as the better of the two for ${wins} of ${rows.length} runs (beyond noise: better in ${better}, worse in ${worse}): ${rows.map((x) => `${x.cfg.name} (S ${x.cfg.trainScale}) ${pc(x.dn)} / ${pc(x.mc)} / ${pc(x.both)}`).join("; ")}.`,
      ...judge(
        rows.map((x) => x.cfg),
        better * 2 > rows.length ? true : worse * 2 > rows.length ? false : null,
      ),
    });
  }
  return out;
}
