import { useEffect, useState } from 'react';
import { parseLendMemory } from '../../../../shared/app/contribute-input';
import { declaredFromUrl } from '../declared';
import { categorize } from '../../../../shared/device/profile';
import {
  bytes,
  duration,
  flops,
  num,
  PHASE_TEXT,
  shortId,
  unitSpan,
  unitsLabel,
  withShortPeerIds,
} from '../format';
import { useStore } from 'zustand';
import { useShallow } from 'zustand/react/shallow';
import type { ContributeState } from '../../../../shared/app/contributor';
import { contributor } from '../tab';
import { useNetworkView } from '../store';
import { IdentityCard } from './ledger-cards';

/** True when this peer runs a lightweight model whole: its own one-peer ring, a replica. */
function wholeLightweight(a: { serving?: string; range: [number, number]; units: number }): boolean {
  return a.serving === 'lightweight' && a.range[0] === 0 && a.range[1] === a.units;
}

/**
 * Everything the page shows but the live counters: the stage's counters change every step (a few
 * times a second once coalesced, see tab.ts), and only the Live card re-renders for them.
 */
const allButStats = (s: ContributeState): Omit<ContributeState, 'stats'> => {
  const { stats: _stats, ...rest } = s;
  return rest;
};

/** "Lend your GPU": one click to join; what this tab measured, was assigned, downloaded and served. */
export function ContributePage() {
  const c = useStore(contributor.store, useShallow(allButStats));
  // The field as typed; checked on blur and on join.
  const [lend, setLend] = useState('');
  const [lendError, setLendError] = useState<string | undefined>();
  const join = () => {
    const r = parseLendMemory(lend);
    if (!r.ok) return setLendError(r.error.message);
    setLendError(undefined);
    const declared = declaredFromUrl().capability;
    void contributor
      .start({
        ...(declared ? { capability: declared } : {}),
        ...(r.value !== undefined ? { lendMemoryBytes: r.value } : {}),
      })
      .catch(() => undefined);
  };

  // Optional auto-pause while the tab is hidden or the device runs on battery.
  useEffect(() => {
    if (!c.autoPause) return;
    const checkNow = async () => {
      const battery = await (navigator as { getBattery?: () => Promise<{ charging: boolean }> })
        .getBattery?.()
        .catch(() => undefined);
      const away = document.hidden || (battery !== undefined && !battery.charging);
      const phase = contributor.store.getState().phase;
      if (away && (phase === 'serving' || phase === 'waiting' || phase === 'unassigned'))
        void contributor.pause();
      if (!away && phase === 'paused') contributor.resume();
    };
    // Event listeners and timers ignore returned promises: run the check and let it settle.
    const check = () => void checkNow();
    document.addEventListener('visibilitychange', check);
    const t = setInterval(check, 10_000);
    return () => {
      document.removeEventListener('visibilitychange', check);
      clearInterval(t);
    };
  }, [c.autoPause]);

  // The coordinator's category (its thresholds: `--category-c-below-tflops`) once it lists this
  // peer; until then the page's own guess with the default thresholds.
  const serverCategory = useNetworkView((s) => s.snapshot?.peers.find((p) => p.id === c.peerId)?.category);
  const category =
    serverCategory ??
    c.capability?.category ??
    (c.capability ? categorize(c.capability.tflops, { mobile: c.capability.mobile }) : undefined);
  const joined = c.phase !== 'idle' && c.phase !== 'error';
  const d = c.download;
  const elapsed = d ? ((d.finishedAt ?? performance.now()) - d.startedAt) / 1000 : 0;
  const speed = d && elapsed > 0 ? d.fetched / elapsed : undefined;
  const eta =
    d && speed && d.bytesTotal > d.bytesDone
      ? (d.bytesTotal - d.bytesDone) / speed
      : d?.finishedAt
        ? 0
        : undefined;

  return (
    <>
      <p className="lead">
        Lend this device to the network. Ringwork measures what it can do, the coordinator gives it a slice of
        a language model&apos;s layers, and it runs that slice for other people&apos;s chats. Only its own
        slice is downloaded, and it is kept in the browser&apos;s cache for next time.
      </p>
      <div style={{ marginBottom: '1rem' }}>
        <IdentityCard />
      </div>
      <div className="row" style={{ marginBottom: '1rem' }}>
        {!joined ? (
          <>
            <button className="big" data-testid="join" onClick={join}>
              Contribute this device
            </button>
            <label className="field" style={{ marginBottom: 0 }}>
              Memory to lend (MB; empty: all this device can use)
              <input
                data-testid="lend-memory"
                type="text"
                inputMode="decimal"
                placeholder="all usable memory"
                value={lend}
                aria-invalid={lendError ? true : undefined}
                aria-describedby="lend-memory-error"
                onChange={(e) => {
                  setLend(e.target.value);
                  setLendError(undefined);
                }}
                onBlur={() => {
                  const r = parseLendMemory(lend);
                  setLendError(r.ok ? undefined : r.error.message);
                }}
              />
              <span
                id="lend-memory-error"
                className="field-error"
                role="alert"
                data-testid="lend-memory-error"
              >
                {lendError ?? ''}
              </span>
            </label>
          </>
        ) : (
          <>
            {c.phase === 'paused' ? (
              <button onClick={() => contributor.resume()}>Resume</button>
            ) : (
              <button className="secondary" onClick={() => void contributor.pause()}>
                Pause
              </button>
            )}
            <button className="secondary" data-testid="leave" onClick={() => void contributor.leave()}>
              Leave the network
            </button>
          </>
        )}
        <span
          data-testid="contribute-phase"
          className="badge"
          data-peer={c.peerId}
          data-rejoins={c.rejoins}
          data-drained-sessions={c.lastDrain?.openSessions}
        >
          {PHASE_TEXT[c.phase]}
        </span>
      </div>
      {c.error && (
        <div className="notice error" data-testid="contribute-error" data-code={c.errorCode}>
          {withShortPeerIds(c.error)}
          {c.errorCode === 'PROTOCOL_BAD_VERSION' && ' Reload the page to get the current version.'}
        </div>
      )}
      {c.rejoin && (
        <div className="notice" data-testid="contribute-rejoin">
          Connection to the network lost ({withShortPeerIds(c.rejoin.reason)}); reconnecting by itself,
          attempt {c.rejoin.attempt} in {num(c.rejoin.delayMs / 1000, 1)} s. The loaded slice is kept.
        </div>
      )}
      {c.phase === 'unassigned' && c.unassignedReason && (
        <div className="notice">Standing by: {withShortPeerIds(c.unassignedReason)}</div>
      )}
      <div className="grid">
        <section className="card">
          <h2>This device</h2>
          <dl className="kv">
            <dt>Compute</dt>
            <dd>{flops(c.capability?.tflops)}</dd>
            <dt>Memory bandwidth</dt>
            <dd>{c.capability ? `${num(c.capability.bandwidthGBps)} GB/s` : '—'}</dd>
            <dt>Memory lent</dt>
            <dd data-testid="memory-lent" data-bytes={c.capability?.memoryBytes}>
              {bytes(c.capability?.memoryBytes)}
              {c.usableMemoryBytes !== undefined &&
              c.capability &&
              c.usableMemoryBytes > c.capability.memoryBytes
                ? ` of ${bytes(c.usableMemoryBytes)} usable`
                : ''}
            </dd>
            <dt>Category</dt>
            <dd>{category ? <span className={`badge ${category}`}>{category}</span> : '—'}</dd>
            <dt>Backend</dt>
            <dd>{c.backend ?? c.capability?.backend ?? '—'}</dd>
            <dt>Why</dt>
            <dd style={{ color: 'var(--muted)' }}>{c.backendReason ?? '—'}</dd>
            <dt>Peer id</dt>
            <dd>{shortId(c.peerId)}</dd>
          </dl>
        </section>
        <section className="card">
          <h2>Assignment</h2>
          {c.assignment && wholeLightweight(c.assignment) ? (
            <p className="serves-whole" data-testid="serves-whole">
              {c.capability?.mobile ? 'This phone' : 'This device'} serves {c.assignment.model} whole
              (lightweight)
            </p>
          ) : null}
          {c.assignment ? (
            <dl className="kv" data-testid="assignment">
              <dt>Model</dt>
              <dd>{c.assignment.model}</dd>
              <dt>Layers</dt>
              <dd title="A model is a chain of units: 0 = token embedding, then one per transformer block, then the head.">
                {unitsLabel(c.assignment.range, c.assignment.units)}{' '}
                <span style={{ color: 'var(--muted)' }}>
                  ({unitSpan(c.assignment.range)} of {c.assignment.units})
                </span>
              </dd>
              <dt>Weights</dt>
              <dd>{c.assignment.weightFormat}</dd>
              <dt>Receives from</dt>
              <dd>{shortId(c.assignment.prev)}</dd>
              <dt>Sends to</dt>
              <dd>{shortId(c.assignment.next)}</dd>
              <dt title="Goes up each time the coordinator re-plans the ring">Ring version</dt>
              <dd>{c.assignment.epoch}</dd>
            </dl>
          ) : (
            <p style={{ color: 'var(--muted)' }}>Not assigned yet.</p>
          )}
        </section>
        <section className="card">
          <h2>
            {c.assignment && wholeLightweight(c.assignment)
              ? 'Download of the model'
              : 'Download of this shard'}
          </h2>
          {d ? (
            <>
              <div className="progress">
                <div style={{ width: `${d.bytesTotal ? (100 * d.bytesDone) / d.bytesTotal : 0}%` }} />
              </div>
              <dl className="kv">
                <dt>Progress</dt>
                <dd>
                  {bytes(d.bytesDone)} of {bytes(d.bytesTotal)}
                </dd>
                <dt>Downloaded</dt>
                <dd data-testid="fetched" data-bytes={d.fetched} data-total={d.bytesTotal}>
                  {bytes(d.fetched)}
                  {d.bytesDone > d.fetched
                    ? ` (${bytes(d.bytesDone - d.fetched)} from the browser cache)`
                    : ''}
                </dd>
                <dt>Speed</dt>
                <dd>{speed ? `${bytes(speed)}/s` : '—'}</dd>
                <dt>ETA</dt>
                <dd>{duration(eta)}</dd>
              </dl>
            </>
          ) : (
            <p style={{ color: 'var(--muted)' }}>Nothing to download yet.</p>
          )}
        </section>
        <LiveCard />
      </div>
    </>
  );
}

/** The live counters and the compute limit: the only part that changes while the stage serves. */
function LiveCard() {
  const stats = useStore(contributor.store, (s) => s.stats);
  const dutyCycle = useStore(contributor.store, (s) => s.dutyCycle);
  const autoPause = useStore(contributor.store, (s) => s.autoPause);
  const msPerStep = stats.stepsServed ? stats.computeMs / stats.stepsServed : undefined;
  const uptime = stats.joinedAt ? (Date.now() - stats.joinedAt) / 1000 : undefined;
  return (
    <section className="card">
      <h2>Live</h2>
      <dl className="kv">
        <dt>Steps served</dt>
        <dd data-testid="steps-served">{stats.stepsServed}</dd>
        <dt>Tokens sampled</dt>
        <dd>{stats.tokensServed}</dd>
        <dt>ms per step</dt>
        <dd>{num(msPerStep, 2)}</dd>
        <dt>Open sessions</dt>
        <dd>{stats.openSessions}</dd>
        <dt>Uptime</dt>
        <dd>{duration(uptime)}</dd>
      </dl>
      <label className="field" style={{ marginTop: '0.75rem' }}>
        Compute limit: {Math.round(dutyCycle * 100)}% of the time
        <input
          data-testid="duty-cycle"
          type="range"
          min={10}
          max={100}
          step={10}
          value={Math.round(dutyCycle * 100)}
          onChange={(e) => contributor.setDutyCycle(Number(e.target.value) / 100)}
        />
      </label>
      <label style={{ color: 'var(--muted)', display: 'flex', gap: '0.5rem', alignItems: 'center' }}>
        <input
          type="checkbox"
          checked={autoPause}
          onChange={(e) => contributor.setAutoPause(e.target.checked)}
        />
        <span>Pause while this tab is hidden or on battery</span>
      </label>
    </section>
  );
}
