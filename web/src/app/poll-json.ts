/**
 * Polling of the ledger and stake endpoints the Contribute and Chat pages show. A server with the
 * feature off answers `{enabled: false}` (with a 404, which the browser logs in the console); that
 * does not change while the server runs, so the poller asks once and stops instead of logging a
 * failed request every few seconds for as long as the page is open.
 */

/** The timers and fetch a poller uses (injected by tests; the page's own by default). */
export interface PollDeps {
  fetch: (url: string, init?: RequestInit) => Promise<{ json(): Promise<unknown> }>;
  setInterval: (fn: () => void, ms: number) => unknown;
  clearInterval: (handle: unknown) => void;
}

const pageDeps = (): PollDeps => ({
  fetch: (url, init) => globalThis.fetch(url, init),
  setInterval: (fn, ms) => globalThis.setInterval(fn, ms),
  clearInterval: (h) => globalThis.clearInterval(h as ReturnType<typeof setInterval>),
});

/** True for an answer that says the feature is off on this server (`{enabled: false}`). */
export function featureOff(answer: unknown): boolean {
  return typeof answer === 'object' && answer !== null && (answer as { enabled?: unknown }).enabled === false;
}

/**
 * Fetches `url` as JSON now and every `ms`, handing each answer to `onData`, until the returned stop
 * function is called or an answer says the feature is off. Failed requests are skipped (the next
 * tick tries again).
 */
export function pollJson(
  url: string,
  ms: number,
  onData: (data: unknown) => void,
  init?: RequestInit,
  deps: PollDeps = pageDeps(),
): () => void {
  let live = true;
  let handle: unknown;
  const stop = () => {
    live = false;
    if (handle !== undefined) deps.clearInterval(handle);
    handle = undefined;
  };
  const load = () =>
    void deps
      .fetch(url, init)
      .then((r) => r.json())
      .then((d) => {
        if (!live) return;
        onData(d);
        if (featureOff(d)) stop();
      })
      .catch(() => undefined);
  load();
  if (live) handle = deps.setInterval(load, ms);
  return stop;
}
