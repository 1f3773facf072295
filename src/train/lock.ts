/**
 * The run directory's lock, so two `vgg train` processes never write one run at once.
 *
 * `RUN_DIR/.lock` holds one line of JSON: `{"pid", "host", "started", "procStart"}` (procStart: the process's
 * start time in clock ticks since boot, from /proc/PID/stat, where there is one). It is created complete and
 * exclusively: the line goes to a temp file, which is hard-linked to `.lock` (link fails if `.lock` exists, and
 * a reader never sees a half-written lock); where hard links are not supported, `.lock` is opened with O_EXCL.
 *
 * A lock whose holder is gone (same host, and no process with that pid, or one that started at another time: a
 * reused pid) is stale: it is taken over with a note. A live holder, or one on another host (its liveness cannot
 * be checked from here), makes the second run refuse with one line naming the directory and the holder's pid.
 * The lock is released on every exit of train(): normal, error, SIGINT; and by an exit hook should the process
 * end without unwinding (process.exit). A SIGKILL leaves it behind, stale, for the next run to take over.
 */
import * as fs from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { VggError } from "../errors.js";
import { fsError, syncDir } from "../io/atomic.js";

export const LOCK_NAME = ".lock";

export interface LockHolder {
  pid: number;
  host: string;
  started: string;
  procStart?: string;
}

export interface RunLock {
  readonly path: string;
  release(): void;
}

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot. Undefined off Linux. */
function procStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

/** Is the process that wrote `h` still running? Only answerable on the host that wrote it. */
function holderAlive(h: LockHolder): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (err) {
    // EPERM: a process of another user has that pid; it exists.
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const now = procStart(h.pid);
  // The pid exists; a different start time means it was reused by an unrelated process.
  return !(h.procStart && now && now !== h.procStart);
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as LockHolder;
    if (Number.isSafeInteger(h.pid) && h.pid > 0 && typeof h.host === "string") return h;
  } catch {
    // not a lock this code wrote
  }
  return undefined;
}

/** Creates `lock` holding `text`, complete, unless it exists: false when it does. */
function createExclusive(lock: string, text: string): boolean {
  const tmp = `${lock}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`;
  try {
    fs.writeFileSync(tmp, text, { flag: "wx" });
    try {
      fs.linkSync(tmp, lock);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return false;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw err;
    }
    // No hard links on this filesystem: O_EXCL instead (a crash between create and write leaves an empty lock).
    try {
      fs.writeFileSync(lock, text, { flag: "wx" });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    }
  } catch (err) {
    throw fsError(lock, err, "create the run lock");
  } finally {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // never created
    }
  }
}

/** Removes lock temp files left by processes that were killed while creating a lock. */
function removeDeadTemps(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^\.lock\.(\d+)\.[a-z0-9]+\.tmp$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") {
        try {
          fs.unlinkSync(join(dir, name));
        } catch {
          // gone already
        }
      }
    }
  }
}

/**
 * Takes `dir`'s lock (the directory must exist) or throws a one-line VggError naming the directory and the holder.
 * `note` is told when a stale lock is taken over.
 */
export function acquireRunLock(dir: string, note: (line: string) => void = () => {}): RunLock {
  const lock = join(dir, LOCK_NAME);
  const host = hostname();
  const me: LockHolder = { pid: process.pid, host, started: new Date().toISOString(), procStart: procStart(process.pid) };
  const text = `${JSON.stringify(me)}\n`;
  removeDeadTemps(dir);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(lock, text)) {
      syncDir(dir);
      return heldLock(lock, text);
    }
    let seen: string;
    let age: number;
    try {
      seen = fs.readFileSync(lock, "utf8");
      age = Date.now() - fs.statSync(lock).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // released meanwhile: try again
      throw fsError(lock, err);
    }
    const h = parseHolder(seen);
    let why: string;
    if (h) {
      if (h.host !== host) {
        throw new VggError(
          `is locked by vgg train pid ${h.pid} on host ${h.host} (since ${h.started}); if that run is over, delete ${lock}`,
          dir,
        );
      }
      if (holderAlive(h)) {
        throw new VggError(
          `is in use by another vgg train (pid ${h.pid}, since ${h.started}); wait for it to finish or stop it (Ctrl-C checkpoints it)`,
          dir,
        );
      }
      why = `pid ${h.pid} is no longer running`;
    } else {
      // Unreadable: written by the O_EXCL fallback and cut short. Give a live writer a moment to finish.
      if (age < 5000) throw new VggError(`is being locked by another vgg train (${lock} is not complete yet); try again`, dir);
      why = "it is unreadable";
    }
    // Remove it only if it is still the lock judged stale (another process may have taken it over meanwhile).
    try {
      if (fs.readFileSync(lock, "utf8") === seen) fs.unlinkSync(lock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw fsError(lock, err, "remove the stale run lock");
    }
    note(`taking over the stale lock ${lock} (${why})`);
  }
  throw new VggError("cannot take the run lock: other processes keep taking it", dir);
}

function heldLock(lock: string, text: string): RunLock {
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.removeListener("exit", release);
    try {
      // Only our own lock: never one another process took over (after this one was judged stale).
      if (fs.readFileSync(lock, "utf8") === text) fs.unlinkSync(lock);
    } catch {
      // already gone
    }
  };
  process.on("exit", release);
  return { path: lock, release };
}
