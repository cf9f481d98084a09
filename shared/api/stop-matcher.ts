/**
 * Stop strings over a token stream, for the server's API and the SDK's ring transport alike. A stop
 * string can span pieces, so text that could still be the start of one is held back until it is
 * known not to be; what is emitted never contains a stop string or any part of the one that ended
 * generation (OpenAI's semantics).
 */

/** Feeds pieces in, gets the text safe to emit out. */
export interface StopMatcher {
  /** Adds a piece; returns the text now safe to emit and whether a stop string was hit. */
  push(piece: string): { emit: string; stopped: boolean };
  /** The held-back text, at the end of generation (no stop string was hit). */
  flush(): string;
}

/** Creates a matcher for `stops` (empty: everything is emitted at once). */
export function createStopMatcher(stops: readonly string[]): StopMatcher {
  let held = '';
  let done = false;
  return {
    push(piece) {
      if (done) return { emit: '', stopped: true };
      held += piece;
      let cut = -1;
      for (const s of stops) {
        const i = held.indexOf(s);
        if (i >= 0 && (cut < 0 || i < cut)) cut = i;
      }
      if (cut >= 0) {
        done = true;
        const emit = held.slice(0, cut);
        held = '';
        return { emit, stopped: true };
      }
      // Keep the longest suffix that is a proper prefix of some stop string.
      let keep = 0;
      for (const s of stops)
        for (let n = Math.min(s.length - 1, held.length); n > keep; n--)
          if (held.endsWith(s.slice(0, n))) {
            keep = n;
            break;
          }
      const emit = held.slice(0, held.length - keep);
      held = held.slice(held.length - keep);
      return { emit, stopped: false };
    },
    flush() {
      const rest = done ? '' : held;
      held = '';
      return rest;
    },
  };
}
