import { bytes, flops, num, shortId, singleRequest, unitSpan, unitsLabel, withShortPeerIds } from '../format';
import { useStore } from 'zustand';
import { useNetworkView, type NetworkSnapshot } from '../store';
import { contributor, requester } from '../tab';
import { Leaderboard } from './ledger-cards';
import { useNarrow } from '../use-narrow';

/** Cluster mode: the server instances, the peers each holds, which one coordinates and which answered. */
function Instances({ cluster }: { cluster: NonNullable<NetworkSnapshot['cluster']> }) {
  return (
    <section className="card" data-testid="instances">
      <h2>Server instances</h2>
      <p>
        Answered by <strong>{cluster.instance}</strong>
        {cluster.redis === 'down' ? ' (shared state unreachable: showing what it holds)' : ''}.
      </p>
      <table>
        <thead>
          <tr>
            <th>Instance</th>
            <th>Peers</th>
            <th>Role</th>
          </tr>
        </thead>
        <tbody>
          {(cluster.instances ?? []).map((i) => (
            <tr key={i.id}>
              <td>
                {i.id}
                {i.id === cluster.instance ? ' (answered)' : ''}
              </td>
              <td>{i.peers}</td>
              <td>{i.coordinator ? 'coordinator' : 'follower'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** The network at a glance: every peer, and each ring drawn with the layers each peer runs. */
export function NetworkPage() {
  const { snapshot, error } = useNetworkView();
  const me = useStore(contributor.store, (s) => s.peerId);
  // Runs on every change of the requester's store (each streamed token): no copy of the history.
  const lastAnswer = useStore(requester.store, (s) =>
    s.messages.findLast((m) => m.meta?.done && !m.meta.error),
  );
  if (error) return <p className="notice error">Could not load the network: {error}</p>;
  if (!snapshot) return <p className="lead">Loading the network…</p>;
  const contributors = snapshot.peers.filter(
    (p) => p.roles.includes('contributor') && snapshot.profiles[p.id],
  );
  const totalTflops = contributors.reduce((a, p) => a + (snapshot.profiles[p.id]?.tflops ?? 0), 0);
  const totalMem = contributors.reduce((a, p) => a + (snapshot.profiles[p.id]?.memoryBytes ?? 0), 0);
  return (
    <>
      <p className="lead">
        Who is lending compute, and how the coordinator arranged them: each ring runs one model, each peer in
        it a contiguous range of layers, and a hidden-state vector travels around the ring once per token.
      </p>
      <div className="grid" style={{ marginBottom: '1rem' }}>
        <Leaderboard />
        <section className="card">
          <h2>Totals</h2>
          <dl className="kv">
            <dt>Contributors</dt>
            <dd data-testid="contributor-count">{contributors.length}</dd>
            <dt>Compute</dt>
            <dd>{flops(totalTflops)}</dd>
            <dt>Memory</dt>
            <dd>{bytes(totalMem)}</dd>
            <dt>Rings</dt>
            <dd>{snapshot.rings.length}</dd>
            <dt>Last answer</dt>
            <dd>
              {lastAnswer?.meta
                ? `${num(lastAnswer.meta.decodeTokPerS)} tok/s measured, ${num(lastAnswer.meta.computeMsPerToken, 2)} ms compute + ${num(lastAnswer.meta.hopMsPerToken, 2)} ms ${lastAnswer.meta.local ? 'other (ran in this tab)' : 'hops'} per token`
                : '—'}
            </dd>
          </dl>
        </section>
        {snapshot.cluster ? <Instances cluster={snapshot.cluster} /> : null}
      </div>
      {snapshot.models.map((m) => (
        <section className="card" key={m.id} style={{ marginBottom: '1rem' }}>
          <h2>
            {m.id} · {m.units} units · {bytes(m.totalBytes)} with KV cache{' '}
            <ServingBadge serving={m.serving} id={m.id} />
          </h2>
          {m.replicas?.length ? (
            <p data-testid={`replicas-${m.id}`}>
              Served whole by{' '}
              {m.replicas.length === 1
                ? 'one peer on its own'
                : `${m.replicas.length} peers, each on its own`}{' '}
              (lightweight replicas; each chat goes to the least busy):{' '}
              {m.replicas
                .map((r) => r.stages[0]?.peer)
                .filter((p): p is string => p !== undefined)
                .map((p) => `${shortId(p)}${p === me ? ' (this tab)' : ''}`)
                .join(', ')}
            </p>
          ) : null}
          {m.ring ? (
            <RingDrawing model={m} snapshot={snapshot} me={me} />
          ) : (
            <p className="notice" data-testid={`no-ring-${m.id}`}>
              No ring: {withShortPeerIds(m.noRing?.reason) ?? 'no contributors yet'}
              {m.noRing?.missingBytes ? ` (${bytes(m.noRing.missingBytes)} more memory needed)` : ''}
            </p>
          )}
          {m.predictedTokensPerSecond || m.observedTokensPerSecond ? (
            <p style={{ color: 'var(--muted)' }} data-testid={`speed-${m.id}`}>
              <span data-testid="single-request">
                single request ≈ {num(singleRequest(m), 1)} tok/s
                {m.observedTokensPerSecond
                  ? ` (measured by recent requests${m.predictedTokensPerSecond ? `; planned ${num(m.predictedTokensPerSecond, 1)}` : ''})`
                  : ' (planned)'}
              </span>
              {m.pipelinedTokensPerSecond ? (
                <span data-testid="pipelined-capacity">
                  {' · '}pipelined capacity ≈ {num(m.pipelinedTokensPerSecond, 1)} tok/s (planned, many
                  requests at once)
                </span>
              ) : null}
            </p>
          ) : null}
        </section>
      ))}
      <section className="card">
        <h2>Peers</h2>
        <div className="table-scroll" tabIndex={0} aria-label="peers (scrolls sideways)">
          <table data-testid="peer-table">
            <thead>
              <tr>
                <th>Peer</th>
                <th>Category</th>
                <th>Compute</th>
                <th>GB/s</th>
                <th>Memory</th>
                <th>Backend</th>
                <th>Assignment</th>
                <th>Validation</th>
              </tr>
            </thead>
            <tbody>
              {snapshot.peers.map((p) => {
                const prof = snapshot.profiles[p.id];
                const a = p.assignment;
                return (
                  <tr key={p.id}>
                    <td>
                      {shortId(p.id)}
                      {p.id === me ? ' (this tab)' : ''}
                      {p.instance ? ` · on ${p.instance}` : ''}
                    </td>
                    <td>{p.category ? <span className={`badge ${p.category}`}>{p.category}</span> : '—'}</td>
                    <td>{prof ? flops(prof.tflops) : '—'}</td>
                    <td>{prof ? num(prof.bandwidthGBps) : '—'}</td>
                    <td>{bytes(prof?.memoryBytes)}</td>
                    <td>{prof?.backend ?? 'chat only'}</td>
                    <td>
                      {p.withdrawal
                        ? p.withdrawal.reason
                        : a?.kind === 'assigned' && a.range && wholeReplica(snapshot, a.model, a.range)
                          ? `${a.model} whole (lightweight)`
                          : a?.kind === 'assigned' && a.range
                            ? `${a.model} ${unitSpan(a.range)}`
                            : a?.kind === 'standby' && a.range
                              ? `standby for ${a.model} ${unitSpan(a.range)}`
                              : a?.kind === 'unassigned'
                                ? `not needed now (${withShortPeerIds(a.reason ?? '')})`
                                : '—'}
                    </td>
                    <td
                      data-testid="peer-validation"
                      data-peer={p.id}
                      data-flagged={p.flagged ? 'true' : 'false'}
                    >
                      {p.flagged && (
                        <span className="badge flagged" title="a proven deviant: left out of every ring">
                          flagged
                        </span>
                      )}{' '}
                      {p.validatedSteps !== undefined
                        ? `${p.validatedSteps} steps validated · reputation ${num(p.reputation ?? 0, 2)}`
                        : '—'}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </section>
    </>
  );
}

/** "lightweight" or "sharded", with what it means on hover. */
function ServingBadge({ serving, id }: { serving: 'lightweight' | 'sharded' | undefined; id: string }) {
  if (!serving) return null;
  return (
    <span
      className={`badge serving ${serving}`}
      data-testid={`serving-${id}`}
      title={
        serving === 'lightweight'
          ? 'Small enough for one modest device: phones and other category C peers each serve it whole'
          : 'Split into layer ranges over a ring of stronger peers'
      }
    >
      {serving}
    </span>
  );
}

/** True when `range` is a whole lightweight model: the peer serves it alone. */
function wholeReplica(snapshot: NetworkSnapshot, model: string | undefined, range: [number, number]) {
  const m = snapshot.models.find((x) => x.id === model);
  return m?.serving === 'lightweight' && range[0] === 0 && range[1] === m.units;
}

/** The measured link between two peers (either order), if any. */
function linkBetween(snapshot: NetworkSnapshot, a: string, b: string) {
  return snapshot.links?.find((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a));
}

/** Peers on a circle in ring order; each arc labelled with the units that peer runs and its measured RTT. */
function RingDrawing({
  model,
  snapshot,
  me,
}: {
  model: NetworkSnapshot['models'][number];
  snapshot: NetworkSnapshot;
  me?: string;
}) {
  const stages = model.ring!.stages;
  // On a phone the drawing keeps only numbers and short ids (large enough to read once scaled
  // down); the layers of each stage are listed beneath it instead.
  const narrow = useNarrow();
  // 380 wide on a phone: room for a side peer's id beside its circle.
  const W = narrow ? 380 : 640;
  // Tall enough that the labels of the top and bottom stages (placed outside the circle) stay
  // inside the drawing: at 360 the top stage's id was cut off.
  const H = narrow ? 300 : 440;
  const cx = W / 2;
  const cy = H / 2;
  const r = narrow ? 95 : 120;
  const at = (i: number) => {
    const a = (2 * Math.PI * i) / stages.length - Math.PI / 2;
    return { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a), a };
  };
  const drawing = (
    <svg
      viewBox={`0 0 ${W} ${H}`}
      className="ring-drawing"
      role="img"
      aria-label={`ring of ${stages.length} peers serving ${model.id}`}
      data-testid={`ring-${model.id}`}
    >
      <defs>
        <marker
          id="arrow"
          viewBox="0 0 10 10"
          refX="9"
          refY="5"
          markerWidth="7"
          markerHeight="7"
          orient="auto-start-reverse"
        >
          <path d="M 0 0 L 10 5 L 0 10 z" fill="#6ee7b7" />
        </marker>
      </defs>
      <circle cx={cx} cy={cy} r={r} fill="none" stroke="#2a2f3a" strokeDasharray="4 6" />
      {stages.length > 1 &&
        stages.map((s, i) => {
          const p = at(i);
          const q = at((i + 1) % stages.length);
          const dx = q.x - p.x;
          const dy = q.y - p.y;
          const len = Math.hypot(dx, dy);
          const shrink = 26 / len;
          const link = linkBetween(snapshot, s.peer, stages[(i + 1) % stages.length]!.peer);
          // The measured latency sits beside the edge, outwards from the ring's centre. A two-peer
          // ring's edges both cross the centre, so there each edge takes its own side (its normal),
          // and its line moves 6 px that way so the two arrows do not lie on one line.
          const mx = (p.x + q.x) / 2;
          const my = (p.y + q.y) / 2;
          const away = Math.hypot(mx - cx, my - cy);
          const ox = away >= 1 ? (mx - cx) / away : dy / len;
          const oy = away >= 1 ? (my - cy) / away : -dx / len;
          const side = stages.length === 2 ? 6 : 0;
          // Anchored on the side away from the edge, so a long label never runs across its line.
          const anchor = ox > 0.3 ? 'start' : ox < -0.3 ? 'end' : 'middle';
          return (
            <g key={`e${i}`}>
              <line
                x1={p.x + dx * shrink + ox * side}
                y1={p.y + dy * shrink + oy * side}
                x2={q.x - dx * shrink + ox * side}
                y2={q.y - dy * shrink + oy * side}
                stroke={link && link.rttMs >= 50 ? '#fca5a5' : '#6ee7b7'}
                strokeWidth={2}
                markerEnd="url(#arrow)"
              />
              <text
                x={mx + ox * 14}
                y={my + oy * 14 + 4}
                textAnchor={anchor}
                style={{ fill: '#9aa3b2', fontSize: 11 }}
                data-testid="edge-latency"
              >
                {link ? `${num(link.rttMs, 1)} ms · ${num(link.mbps, 0)} Mbit/s` : 'not measured'}
              </text>
            </g>
          );
        })}
      {stages.map((s, i) => {
        const p = at(i);
        const prof = snapshot.profiles[s.peer];
        // A peer on the ring's side has its label beside its circle, anchored away from it (centred
        // there, a long label ran through the circle); a peer at the top or bottom, above or below.
        const cos = Math.cos(p.a);
        const anchor = cos > 0.3 ? 'start' : cos < -0.3 ? 'end' : 'middle';
        const lx = anchor === 'middle' ? p.x : p.x + Math.sign(cos) * 30;
        const ly = cy + (r + (narrow ? 36 : 55)) * Math.sin(p.a);
        return (
          <g key={s.peer} data-testid="ring-stage">
            <circle
              cx={p.x}
              cy={p.y}
              r={22}
              fill={s.peer === me ? '#1e3a5f' : '#171a21'}
              stroke="#93c5fd"
              strokeWidth={2}
            />
            <text x={p.x} y={p.y + 4} textAnchor="middle">
              {i + 1}
            </text>
            <text
              x={lx}
              y={narrow ? ly + 5 : ly - 8}
              textAnchor={anchor}
              style={{ fontWeight: 600, fontSize: narrow ? 15 : undefined }}
            >
              {shortId(s.peer)}
              {s.peer === me ? ' (you)' : ''}
            </text>
            {!narrow && (
              <text x={lx} y={ly + 8} textAnchor={anchor} data-testid="stage-range">
                {unitSpan(s.range)}: {unitsLabel(s.range, model.units)}
              </text>
            )}
            {prof && !narrow && (
              <text x={lx} y={ly + 23} textAnchor={anchor} style={{ fill: '#9aa3b2' }}>
                {prof.backend} · {flops(prof.tflops)}
              </text>
            )}
          </g>
        );
      })}
      {/* In a small ring the edges cross the middle, where this would sit under them (on a phone
          the text is larger than the diamond of a 4-peer ring). */}
      {(stages.length === 1 || stages.length >= (narrow ? 5 : 4)) && (
        <text
          x={cx}
          y={cy + 4}
          textAnchor="middle"
          style={{ fill: '#9aa3b2', fontSize: narrow ? 14 : undefined }}
        >
          {stages.length === 1 ? 'one peer runs every layer' : 'each token goes once around'}
        </text>
      )}
    </svg>
  );
  if (!narrow) return drawing;
  return (
    <>
      {drawing}
      <ol className="stage-list" data-testid="stage-list">
        {stages.map((s) => {
          const prof = snapshot.profiles[s.peer];
          return (
            <li key={s.peer}>
              <strong>
                {shortId(s.peer)}
                {s.peer === me ? ' (you)' : ''}
              </strong>
              : {unitsLabel(s.range, model.units)}{' '}
              <span style={{ color: 'var(--muted)' }}>
                ({unitSpan(s.range)}
                {prof ? `; ${prof.backend} · ${flops(prof.tflops)}` : ''})
              </span>
            </li>
          );
        })}
      </ol>
    </>
  );
}
