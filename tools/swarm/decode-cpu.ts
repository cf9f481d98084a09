/**
 * CPU per generated token of every process of a swarm run, over the decode phase of one answer
 * (tools/swarm/swarm-run.ts with `perf`; `npm run bench:swarm -- --perf`). The requester page marks
 * the phase's two ends itself — its first streamed token and the answer's stats line appearing —
 * through an exposed function, so the window does not depend on how often the tool polls; at each
 * mark this process reads every process's CPU time from /proc (process-cpu.ts). Tokens in the window
 * are counted from the page's `requester.emitMs` samples (shared/runtime/generate.ts: one per decode
 * step), which `perf=1` pages keep.
 */
import { cpus } from 'node:os';
import type { Page } from '@playwright/test';
import { cpuReport, runProcesses, sampleCpu, type CpuReport, type CpuSample } from './process-cpu.js';

const MARK = '__ringworkCpuMark';
/** Per page, the handler its (one) exposed binding calls: the latest watch's. */
const handlers = new WeakMap<Page, { fn: (what: string, emitted: number) => void }>();

/** A decode window being watched: {@link DecodeCpuWatch.report} once the answer is done. */
export interface DecodeCpuWatch {
  /** The window's report, or undefined when the page never marked both ends (within `timeoutMs`). */
  report(timeoutMs?: number): Promise<CpuReport | undefined>;
}

/**
 * Starts watching the next answer of `chat` (call right before sending it). `pages`: renderer pid →
 * the page's label (`requester`, `stage 0 [0,3)`, …); `serverPid`: the signaling server.
 */
export async function watchDecodeCpu(
  chat: Page,
  o: { pages: ReadonlyMap<number, string>; serverPid?: number },
): Promise<DecodeCpuWatch> {
  // The process set is stable during an answer: list it once, so that a mark only reads /proc/<pid>.
  const procs = runProcesses(o);
  const marks: { start?: [CpuSample, number]; end?: [CpuSample, number] } = {};
  let ended: () => void = () => undefined;
  const end = new Promise<void>((r) => (ended = r));
  const onMark = (what: string, emitted: number) => {
    const s = sampleCpu(procs);
    if (what === 'start' && !marks.start) marks.start = [s, emitted];
    if (what === 'end' && !marks.end) {
      marks.end = [s, emitted];
      ended();
    }
  };
  const known = handlers.get(chat);
  if (known) known.fn = onMark;
  else {
    // A page takes one binding of a name; each watch replaces the handler it calls.
    const ref = { fn: onMark };
    handlers.set(chat, ref);
    await chat.exposeFunction(MARK, (what: string, emitted: number) => ref.fn(what, emitted));
  }
  // A string, not a function: tsx names inner functions with a helper the page does not have.
  await chat.evaluate(`(() => {
    const box = document.querySelector('[data-testid="messages"]');
    if (!box) return;
    const answersBefore = document.querySelectorAll('[data-testid="answer"]').length;
    const emitted = () => globalThis.__ringworkPerf?.samples['requester.emitMs']?.length ?? 0;
    const base = emitted();
    let started = false;
    const obs = new MutationObserver(() => {
      const all = document.querySelectorAll('[data-testid="answer"]');
      if (all.length <= answersBefore) return;
      const done = all[all.length - 1].querySelector('[data-testid="answer-meta"], [data-testid="answer-error"]');
      const n = emitted() - base;
      if (!started && n >= 1 && !done) {
        started = true;
        void globalThis.${MARK}('start', n);
      }
      if (done) {
        obs.disconnect();
        if (started) void globalThis.${MARK}('end', emitted() - base);
      }
    });
    obs.observe(box, { subtree: true, childList: true, attributes: true, characterData: true });
  })()`);
  return {
    async report(timeoutMs = 5000) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([end, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      if (!marks.start || !marks.end) return undefined;
      return cpuReport(procs, marks.start[0], marks.end[0], marks.end[1] - marks.start[1], cpus().length);
    },
  };
}
