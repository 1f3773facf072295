/**
 * One error type for everything a user can get wrong (files, flags, arch/weights pairing).
 * The CLI prints `message` on one line and exits non-zero; anything else is a bug and keeps its stack.
 */
export class VggError extends Error {
  /** The file the problem is in, when there is one. */
  readonly file?: string;
  /** The process exit code the CLI ends with: 1, or 128 + n for a run stopped by signal n. */
  readonly exitCode: number;
  constructor(message: string, file?: string, exitCode = 1) {
    super(file ? `${file}: ${message}` : message);
    this.name = "VggError";
    this.file = file;
    this.exitCode = exitCode;
  }
}

/** Re-throw `err` as a VggError naming `file`, unless it already is one. */
export function inFile(file: string, err: unknown): VggError {
  if (err instanceof VggError) return err.file ? err : new VggError(err.message, file, err.exitCode);
  const msg = err instanceof Error ? err.message : String(err);
  return new VggError(msg, file);
}

/**
 * Untrusted text (names from a file) made safe for a one-line message: control and line-separator characters
 * are escaped and long text is cut, so a hostile name can neither break the line nor flood the terminal.
 */
export function shown(s: string, max = 80): string {
  const cut = s.length > max ? `${s.slice(0, max)}...` : s;
  let out = "";
  for (const ch of cut) {
    const c = ch.charCodeAt(0);
    const unsafe = c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029 || (c >= 0xd800 && c <= 0xdfff);
    out += unsafe ? `\\u${c.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}
