/**
 * Image arguments to files. An argument is a file (kept as it is, whatever its name), a directory (the
 * non-hidden files directly inside it, sorted by name; sub-directories are not entered), or a glob pattern that
 * the shell left unexpanded (quoted, or matching nothing there), e.g. 'imgs/*.jpg': `*` and `?` within one path
 * segment, files only, sorted. Node's fs.globSync is used where it exists (Node 22 and later); on Node 20 a small
 * matcher of its own does `*` and `?` per segment. What cannot be used is reported, not fatal.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface Skipped {
  file: string;
  reason: string;
}

export interface ExpandedInputs {
  files: string[];
  skipped: Skipped[];
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function stat(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

export function hasGlob(s: string): boolean {
  return /[*?]/.test(s);
}

function segmentRegex(seg: string): RegExp {
  const body = seg
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, "[^/]*")
    .replace(/\?/g, "[^/]");
  return new RegExp(`^${body}$`);
}

/** `*` and `?` matching per path segment; a segment's wildcard does not match a leading dot. */
export function simpleGlob(pattern: string): string[] {
  const abs = path.isAbsolute(pattern);
  const segs = pattern.split(/[/\\]+/).filter((s) => s !== "");
  let current = [abs ? path.parse(path.resolve(pattern)).root : ""];
  for (const seg of segs) {
    const next: string[] = [];
    for (const dir of current) {
      if (!hasGlob(seg)) {
        const p = dir === "" ? seg : path.join(dir, seg);
        if (fs.existsSync(p)) next.push(p);
        continue;
      }
      let names: string[];
      try {
        names = fs.readdirSync(dir === "" ? "." : dir);
      } catch {
        continue;
      }
      const re = segmentRegex(seg);
      for (const n of names.sort(byName)) {
        if (n.startsWith(".") && !seg.startsWith(".")) continue;
        if (re.test(n)) next.push(dir === "" ? n : path.join(dir, n));
      }
    }
    current = next;
  }
  return current.filter((p) => p !== "");
}

function glob(pattern: string): string[] {
  const g = (fs as unknown as { globSync?: (p: string) => string[] }).globSync;
  return g ? g(pattern) : simpleGlob(pattern);
}

/** Expands image arguments into files, in argument order (each directory or pattern sorted), without repeats. */
export function expandInputs(args: readonly string[]): ExpandedInputs {
  const files: string[] = [];
  const skipped: Skipped[] = [];
  const seen = new Set<string>();
  const add = (f: string) => {
    const key = path.resolve(f);
    if (seen.has(key)) return;
    seen.add(key);
    files.push(f);
  };
  for (const arg of args) {
    const st = stat(arg);
    if (st?.isDirectory()) {
      let names: string[];
      try {
        names = fs.readdirSync(arg);
      } catch (err) {
        skipped.push({ file: arg, reason: `cannot read the directory: ${(err as Error).message.split("\n")[0]}` });
        continue;
      }
      const inside = names
        .filter((n) => !n.startsWith("."))
        .sort(byName)
        .map((n) => path.join(arg, n))
        .filter((p) => !stat(p)?.isDirectory());
      if (inside.length === 0) skipped.push({ file: arg, reason: "the directory has no files" });
      inside.forEach(add);
    } else if (st) {
      add(arg);
    } else if (hasGlob(arg)) {
      const hits = glob(arg)
        .filter((p) => stat(p)?.isFile())
        .sort(byName);
      if (hits.length === 0) skipped.push({ file: arg, reason: "no file matches" });
      hits.forEach(add);
    } else {
      skipped.push({ file: arg, reason: "no such file" });
    }
  }
  return { files, skipped };
}
