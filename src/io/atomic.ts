/**
 * File access shared by the weight and tensor readers/writers: atomic writes, and positioned reads that turn
 * every operating-system failure into a one-line VggError naming the file.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VggError } from "../errors.js";

function osMessage(err: unknown, verb: string): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case "ENOENT":
      return "no such file or directory";
    case "EISDIR":
      return "is a directory, not a file";
    case "EACCES":
    case "EPERM":
      return `permission denied (cannot ${verb})`;
    case "ENOSPC":
      return "no space left on device";
    case "EDQUOT":
      return "disk quota exceeded";
    case "EFBIG":
      return "file too large (over the process's file-size limit, ulimit -f, or the filesystem's maximum)";
    case "EROFS":
      return "read-only file system";
    case "ENOTDIR":
      return "a parent of this path is not a directory";
    default: {
      const msg = err instanceof Error ? err.message : String(err);
      return `cannot ${verb}: ${msg.split("\n")[0]}`;
    }
  }
}

/** Wraps a failing fs call so that callers only ever see VggError. */
export function fsError(file: string, err: unknown, verb = "read"): VggError {
  if (err instanceof VggError) return err;
  return new VggError(osMessage(err, verb), file);
}

/**
 * Test only: `VGG_TEST_SLOW_CHECKPOINT_MS` makes every atomic write (and the checkpoint commit, see
 * train/checkpoint.ts) sleep this long between writing its temp file and renaming it, so a crash test can kill the
 * process in the middle of a checkpoint. Unset (always, outside tests), this does nothing.
 */
export function testPause(): void {
  const ms = Number(process.env.VGG_TEST_SLOW_CHECKPOINT_MS);
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(ms, 10_000));
}

/** The name pattern of writeFileAtomic's temp files: `.<target>.<pid>.<random>.tmp`, next to the target. */
export const TEMP_FILE = /^\.(.+)\.(\d+)\.([a-z0-9]+)\.tmp$/;

/** Opens `p` ("r+" for a file, "r" for a directory), fsyncs and closes it; fs errors are thrown as they are. */
function fsyncPath(p: string, flags: "r" | "r+"): void {
  const fd = fs.openSync(p, flags);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Makes a written file's contents durable, e.g. before it is renamed into place; fs errors are thrown as they are. */
export function syncFile(file: string): void {
  fsyncPath(file, "r+");
}

/** Makes a rename or a file creation in `dir` durable; directories cannot be opened this way on every platform. */
export function syncDir(dir: string): void {
  try {
    fsyncPath(dir, "r");
  } catch {
    // best effort
  }
}

/**
 * Writes `chunks` to `file` so that readers see either the old file or the complete new one, never a torn write:
 * a temp file in the same directory (so rename stays on one filesystem), fsync, then rename over the target.
 * On failure (a full disk, a file-size limit) the temp file is removed and the target is left as it was.
 */
export function writeFileAtomic(file: string, chunks: readonly Uint8Array[]): void {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, "wx", 0o666);
    for (const chunk of chunks) {
      let off = 0;
      while (off < chunk.byteLength) off += fs.writeSync(fd, chunk, off, chunk.byteLength - off);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    testPause();
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    try {
      fs.unlinkSync(tmp);
    } catch {
      // the temp file may never have been created
    }
    throw fsError(file, err, "write");
  }
  // Make the rename itself durable.
  syncDir(dir);
}

/** writeFileAtomic of a string (UTF-8). */
export function writeTextAtomic(file: string, text: string): void {
  writeFileAtomic(file, [Buffer.from(text, "utf8")]);
}

/** A file opened for positioned reads; `close()` must be called (readers use try/finally). */
export class ReadFile {
  readonly fd: number;
  readonly size: number;
  constructor(readonly file: string) {
    let fd: number;
    try {
      fd = fs.openSync(file, "r");
    } catch (err) {
      throw fsError(file, err);
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.isDirectory()) throw new VggError("is a directory, not a file", file);
      this.size = st.size;
    } catch (err) {
      fs.closeSync(fd);
      throw fsError(file, err);
    }
    this.fd = fd;
  }

  /**
   * Reads exactly `length` bytes at `position` into a fresh, 8-byte-aligned buffer, so typed arrays of any
   * element type can view it without a copy. The range must already be checked against `size`.
   */
  read(position: number, length: number): Uint8Array {
    if (position < 0 || length < 0 || position + length > this.size) {
      throw new VggError(`read of ${length} bytes at offset ${position} is past the end of the file (${this.size} bytes)`, this.file);
    }
    const out = new Uint8Array(length);
    let done = 0;
    try {
      while (done < length) {
        const n = fs.readSync(this.fd, out, done, Math.min(length - done, 1 << 30), position + done);
        if (n === 0) throw new VggError(`file shrank while being read (at byte ${position + done})`, this.file);
        done += n;
      }
    } catch (err) {
      throw fsError(this.file, err);
    }
    return out;
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // nothing useful to do about a failing close of a read-only descriptor
    }
  }
}

/** Opens `file`, runs `fn`, closes it. */
export function withFile<T>(file: string, fn: (f: ReadFile) => T): T {
  const f = new ReadFile(file);
  try {
    return fn(f);
  } finally {
    f.close();
  }
}
