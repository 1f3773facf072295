/**
 * One error type for everything a user can get wrong (files, flags, arch/weights pairing).
 * The CLI prints `message` on one line and exits non-zero; anything else is a bug and keeps its stack.
 */
export class VggError extends Error {
  /** The file the problem is in, when there is one. */
  readonly file?: string;
  constructor(message: string, file?: string) {
    super(file ? `${file}: ${message}` : message);
    this.name = "VggError";
    this.file = file;
  }
}

/** Re-throw `err` as a VggError naming `file`, unless it already is one. */
export function inFile(file: string, err: unknown): VggError {
  if (err instanceof VggError) return err.file ? err : new VggError(err.message, file);
  const msg = err instanceof Error ? err.message : String(err);
  return new VggError(msg, file);
}
