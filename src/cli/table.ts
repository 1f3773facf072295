/** Plain-text tables for the terminal. */
export function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const numeric = head.map((_, k) => rows.length > 0 && rows.every((r) => /^[-\d.,]+$/.test(r[k]) || r[k] === "-"));
  const line = (r: string[]) =>
    r
      .map((c, k) => (numeric[k] ? c.padStart(w[k]) : c.padEnd(w[k])))
      .join("  ")
      .trimEnd();
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}
