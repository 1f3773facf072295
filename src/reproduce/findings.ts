/**
 * The paper's questions, answered from our numbers. Differences are judged against the standard error of a
 * difference of two error rates on n test images, sqrt(2 p (1 - p) / n): a gap under it is called noise.
 */
import type { ConfigName, ConfigResult, Finding, ProtocolName, ReproduceResults } from "./results.js";

const pc = (x: number) => `${(100 * x).toFixed(2)}%`;

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
  const cmp = (a: number, b: number) => (b < a - se(a, b) ? "lower" : b > a + se(a, b) ? "higher" : "within noise of");
  const out: Finding[] = [];
  const single = (name: ConfigName) => err(r, name, "single", false)?.e;

  const depth = (["A", "B", "D", "E"] as ConfigName[]).map((k) => [k, single(k)] as const).filter(([, e]) => e !== undefined) as [
    ConfigName,
    number,
  ][];
  if (depth.length >= 2) {
    const [a, b, d, e] = ["A", "B", "D", "E"].map((k) => depth.find(([x]) => x === k)?.[1]);
    const deep = Math.min(d ?? 1, e ?? 1);
    out.push({
      id: "depth",
      question: "Does depth help (A < B < D/E in accuracy)?",
      paper: "Yes: top-1 error falls from 29.6% (A, 11 layers) to 28.7% (B, 13) and 27.0% (D, 16); E (19) saturates at 27.3%.",
      ours: `Single-scale top-1 error: ${depth.map(([k, v]) => `${k} ${pc(v)}`).join(", ")} (standard error of a difference about ${pc(se(depth[0][1], depth[depth.length - 1][1]))}).`,
      // Deeper must be lower by more than the noise at each step to agree; higher by more than it to disagree.
      agrees:
        a === undefined || b === undefined || (d === undefined && e === undefined)
          ? null
          : b < a - se(a, b) && deep < b - se(b, deep)
            ? true
            : b > a + se(a, b) || deep > b + se(b, deep)
              ? false
              : null,
    });
  }
  const a = single("A");
  const lrn = single("A-LRN");
  if (a !== undefined && lrn !== undefined) {
    out.push({
      id: "lrn",
      question: "Does local response normalisation help (A vs A-LRN)?",
      paper: "No: A-LRN's 29.7% is no better than A's 29.6%, so the deeper nets were built without LRN.",
      ours: `A-LRN's ${pc(lrn)} is ${cmp(a, lrn)} A's ${pc(a)}.`,
      agrees: !(lrn < a - se(a, lrn)),
    });
  }
  const c = single("C");
  const d = single("D");
  if (c !== undefined && d !== undefined) {
    out.push({
      id: "conv1x1",
      question: "Do 1x1 convolutions help less than 3x3 ones (C vs D, same depth)?",
      paper: "Yes: C (1x1 in blocks 3-5) 28.1% against D (3x3) 27.0%: spatial context matters, not only the added non-linearity.",
      ours: `D's ${pc(d)} is ${cmp(c, d)} C's ${pc(c)}.`,
      agrees: d < c - se(c, d) ? true : d > c + se(c, d) ? false : null,
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
        agrees: jj.e < fixed.e - se(fixed.e, jj.e) ? true : jj.e > fixed.e + se(fixed.e, jj.e) ? false : null,
      });
    }
  }
  const rows = r.configs.flatMap((cfg) => {
    const g = (p: ProtocolName) => cfg.evals.find((e) => e.protocol === p && e.scales.length > 1)?.top1Error;
    const [dn, mc, both] = [g("dense"), g("multicrop"), g("dense+multicrop")];
    return dn !== undefined && mc !== undefined && both !== undefined ? [{ cfg, dn, mc, both }] : [];
  });
  if (rows.length) {
    const wins = rows.filter((x) => x.both <= Math.min(x.dn, x.mc)).length;
    out.push({
      id: "dense-multicrop",
      question: "Does dense + multi-crop evaluation beat either alone?",
      paper: "Yes, slightly: D 24.8% dense, 24.6% multi-crop, 24.4% both (complementary boundary treatment).",
      ours: `Both is at least as good as the better of the two for ${wins} of ${rows.length} runs: ${rows.map((x) => `${x.cfg.name} (S ${x.cfg.trainScale}) ${pc(x.dn)} / ${pc(x.mc)} / ${pc(x.both)}`).join("; ")}.`,
      agrees: wins * 2 > rows.length,
    });
  }
  return out;
}
