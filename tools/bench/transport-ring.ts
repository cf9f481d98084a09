/**
 * Drives a ring of real Chromium pages for the transport bench: starts the real signaling server
 * (test mode, as the e2e fixture does), opens one BrowserContext per peer on the built harness page,
 * joins them with declared capabilities that make a 3-way split optimal, and waits until every
 * DataChannel of the ring is open. Only loopback: the caller must run inside the namespace of
 * tests/e2e/isolated.sh ({@link assertLoopbackOnly} refuses anything else).
 */
import { networkInterfaces } from 'node:os';
import type { Browser, BrowserContext, Page } from '@playwright/test';
import { RingworkError } from '../../shared/errors.js';
import { spawnServer } from '../testing/spawn-server.js';

/** One DataChannel connect the harness measured (mirrors the harness's `ConnectSample`). */
export interface ConnectSample {
  next: string;
  epoch: number;
  ms: number;
}

/** What `window.ringworkRing.state()` returns (the part the bench reads). */
export interface HarnessState {
  peerId?: string;
  assignment?: { epoch: number; range: unknown; prev: string | null; next: string | null };
  nextOpen: boolean;
  prevOpen: boolean;
  assignments: number;
  connects?: ConnectSample[];
  log: string[];
}

/**
 * The harness API as seen from the bench. Declared here rather than imported from web/: the server
 * project does not compile browser code, and page functions only need the shape.
 */
export interface HarnessApi {
  join(c: unknown): Promise<{ peerId: string }>;
  roundTrips(
    bytes: number,
    n: number,
    timeoutMs?: number,
  ): Promise<{ ok: boolean; ms: number[]; error?: string }>;
  state(): HarnessState;
}

/** Reads the harness off `window` inside a page function. */
export type HarnessWindow = { ringworkRing: HarnessApi };

/**
 * Refuses to run when this process can see any non-loopback interface. Test traffic may only go to
 * 127.0.0.0/8 or ::1; inside the isolated.sh namespace only `lo` exists, so this is the cheap proof
 * that the browsers cannot send ICE anywhere else.
 */
export function assertLoopbackOnly(): void {
  const outside = Object.entries(networkInterfaces()).filter(([, addrs]) =>
    (addrs ?? []).some((a) => !a.internal),
  );
  if (outside.length > 0) {
    throw new RingworkError(
      'INVALID_ARGUMENT',
      `Non-loopback interfaces are visible (${outside.map(([n]) => n).join(', ')}): run through ` +
        '`npm run bench:transport` (tests/e2e/isolated.sh), which gives it a loopback-only network namespace.',
    );
  }
}

/** Starts the real signaling server on a free loopback port (see spawn-server.ts). */
export const startServer = (extraArgs: readonly string[] = []) => spawnServer(extraArgs);

/**
 * Declared (not measured) capabilities that make a 3-way split optimal (same as ring.spec.ts): at
 * ~1 MFLOP/s per peer a token costs ~1 s on one peer, far more than a hop, so the planner uses all.
 */
export const capability = (tflops: number) => ({
  tflops,
  bandwidthGBps: 100,
  memoryBytes: 4e9,
  backend: 'wasm' as const,
  mobile: false,
  label: `bench peer ${tflops}`,
});

/** Three slightly different speeds: distinct peers, one ring of three. */
export const RING_TFLOPS = [1e-6, 1.2e-6, 1.4e-6];

export interface BenchPeer {
  context: BrowserContext;
  page: Page;
  peerId: string;
}

/** Opens the harness page in its own context (like separate people's tabs) and joins the network. */
export async function openPeer(browser: Browser, url: string, tflops: number): Promise<BenchPeer> {
  const context = await browser.newContext();
  // Without media permission Chromium gathers candidates only on the default-route address, which
  // does not exist in the loopback-only namespace, and ICE never completes.
  await context.grantPermissions(['camera', 'microphone'], { origin: url });
  const page = await context.newPage();
  // Say which URL failed: Chromium's console line for an HTTP error ("Failed to load resource")
  // does not name it, so that line is left out and the response is reported instead.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      process.stderr.write(`[page] ${m.text()}\n`);
    }
  });
  page.on('response', (r) => {
    if (r.status() >= 400) process.stderr.write(`[page] HTTP ${r.status()} ${r.url()}\n`);
  });
  await page.goto(`${url}/harness.html`);
  await page.waitForFunction(() => 'ringworkRing' in window);
  const { peerId } = await page.evaluate(
    (c) => (window as unknown as HarnessWindow).ringworkRing.join(c),
    capability(tflops),
  );
  return { context, page, peerId };
}

/** Every peer's harness state. */
export function states(peers: readonly BenchPeer[]): Promise<HarnessState[]> {
  return Promise.all(
    peers.map((p) => p.page.evaluate(() => (window as unknown as HarnessWindow).ringworkRing.state())),
  );
}

/**
 * Polls until every peer has both ring links open and the ring is made of exactly these peers, or
 * throws with what each peer saw once `timeoutMs` has passed.
 */
export async function waitForRing(peers: readonly BenchPeer[], timeoutMs: number): Promise<HarnessState[]> {
  const ids = new Set(peers.map((p) => p.peerId));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await states(peers);
    const closed = s.every(
      (x) =>
        x.nextOpen &&
        x.prevOpen &&
        x.assignment?.next !== undefined &&
        x.assignment.next !== null &&
        ids.has(x.assignment.next),
    );
    if (closed) return s;
    if (Date.now() > deadline) {
      throw new RingworkError(
        'NO_RING',
        `The ring did not form within ${timeoutMs} ms:\n${s.map((x) => JSON.stringify(x)).join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The ring's size as the coordinator planned it (hops a round trip makes). */
export async function ringSize(url: string): Promise<{ stages: number; iceDropped: number }> {
  const snap = (await (await fetch(`${url}/api/network`)).json()) as {
    rings: { stages: unknown[] }[];
    iceDropped?: number;
  };
  if (snap.rings.length !== 1) {
    throw new RingworkError('NO_RING', `Expected one ring, the server has ${snap.rings.length}.`);
  }
  return { stages: snap.rings[0]!.stages.length, iceDropped: snap.iceDropped ?? 0 };
}

/** Waits until the server has no ring left (the previous formation's peers have gone offline). */
export async function waitNoRing(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const snap = (await (await fetch(`${url}/api/network`)).json()) as { rings: unknown[] };
    if (snap.rings.length === 0) return;
    if (Date.now() > deadline) {
      throw new RingworkError('NO_RING', `The old ring was still planned after ${timeoutMs} ms.`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
