/** A one-line progress bar on stderr (redrawn on a terminal; a few plain lines otherwise, for logs). */
export class Progress {
  private last = -1;
  private readonly tty = Boolean(process.stderr.isTTY);
  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly enabled = true,
  ) {}

  update(done: number, info: string, etaSeconds: number): void {
    if (!this.enabled) return;
    const frac = done / this.total;
    if (this.tty) {
      const w = 24;
      const fill = Math.round(frac * w);
      const bar = `${"=".repeat(Math.max(0, fill - 1))}${fill ? ">" : ""}${" ".repeat(w - fill)}`;
      process.stderr.write(`\r${this.label} [${bar}] ${done}/${this.total} ${info} ETA ${fmtTime(etaSeconds)}\x1b[K`);
    } else {
      const quarter = Math.floor(frac * 4);
      if (quarter > this.last && quarter < 4) {
        this.last = quarter;
        if (quarter > 0) process.stderr.write(`${this.label} ${done}/${this.total} ${info} ETA ${fmtTime(etaSeconds)}\n`);
      }
    }
  }

  done(): void {
    if (this.enabled && this.tty) process.stderr.write("\r\x1b[K");
  }
}

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const ss = String(Math.floor(s % 60)).padStart(2, "0");
  return h ? `${h}:${String(m % 60).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
