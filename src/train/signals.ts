/** Signals during a run: a stop requested by Ctrl-C or SIGTERM, and the error that ends an interrupted run. */
import { VggError } from "../errors.js";
import type { Log } from "./types.js";

/**
 * Thrown when Ctrl-C (SIGINT) or SIGTERM stopped a run after it wrote a checkpoint; `resume` is the command that
 * continues it. The CLI prints the message and exits with `exitCode` (130 or 143, as a shell reports the signal).
 */
export class TrainInterrupted extends VggError {
  constructor(
    message: string,
    readonly resume: string,
    exitCode = 130,
  ) {
    super(message, undefined, exitCode);
    this.name = "TrainInterrupted";
  }
}

/** A stop asked for by a signal, and the exit code the CLI then uses. */
export interface Stop {
  requested: boolean;
  exitCode: number;
  /** Gives the signals back to their default handling. */
  detach: () => void;
}

/**
 * Ctrl-C, and SIGTERM (kill, docker stop, systemd): finish the step, checkpoint, exit as the signal's 128 + n. A
 * second signal exits at once. `detach` gives the signals back.
 */
export function catchSignals(log: Log): Stop {
  const sigint: Stop = {
    requested: false,
    exitCode: 130,
    detach: () => {
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
    },
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const code = signal === "SIGTERM" ? 143 : 130;
    if (sigint.requested) {
      process.stderr.write(`vgg: ${signal} again: exiting without a new checkpoint\n`);
      process.exit(code);
    }
    sigint.requested = true;
    sigint.exitCode = code;
    log(
      signal === "SIGTERM"
        ? "SIGTERM: stopping after the current step to write a checkpoint"
        : "interrupt: stopping after the current step to write a checkpoint (Ctrl-C again to stop at once)",
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return sigint;
}
