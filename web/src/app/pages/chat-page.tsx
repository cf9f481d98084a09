import { useEffect, useState } from 'react';
import { useStore } from 'zustand';
import { num, shortId, singleRequest } from '../format';
import { useNetworkView, type NetworkSnapshot } from '../store';
import type { AnswerFailover } from '../../../../shared/app/requester';
import { requester } from '../tab';

/** Chat with a model whose layers run across other people's tabs. */
export function ChatPage() {
  const chat = useStore(requester.store);
  const snapshot = useNetworkView((s) => s.snapshot);
  const [draft, setDraft] = useState('');
  const s = chat.settings;
  const model = snapshot?.models.find((m) => m.id === s.model);

  useEffect(() => () => requester.abort(), []);

  const send = () => {
    const text = draft.trim();
    if (!text || chat.busy) return;
    setDraft('');
    void requester.send(text);
  };

  return (
    <>
      <p className="lead">
        Ask the network. Your tab tokenizes the prompt, the ring&apos;s tabs each run their slice of the model
        and pass a small vector along, and the tokens stream back here.
      </p>
      <RingStatus model={model} />
      <div className="chat">
        <div>
          <div className="messages" data-testid="messages">
            {chat.messages.length === 0 && (
              <p style={{ color: 'var(--muted)' }}>
                Try “Once upon a time” — the default model is a tiny story writer (stories260K).
              </p>
            )}
            {chat.messages.map((m, i) => (
              <div
                key={i}
                className={`msg ${m.role}`}
                data-testid={m.role === 'assistant' ? 'answer' : 'question'}
                data-tokens={chat.streaming?.index === i ? (chat.streaming.tokens ?? 0) : undefined}
              >
                <span data-testid={m.role === 'assistant' ? 'answer-text' : undefined}>
                  {chat.streaming?.index === i ? chat.streaming.text : m.text}
                </span>
                <FailoverNote
                  failovers={chat.streaming?.index === i ? chat.streaming.failovers : m.meta?.failovers}
                />
                {m.meta?.error && (
                  <div className="meta error" data-testid="answer-error">
                    {m.meta.error}
                  </div>
                )}
                {m.role === 'assistant' && m.meta?.done && !m.meta.error && (
                  <div className="meta" data-testid="answer-meta">
                    prefill {num(m.meta.prefillTokPerS)} tok/s · decode {num(m.meta.decodeTokPerS)} tok/s ·
                    per token {num(m.meta.computeMsPerToken, 2)} ms compute + {num(m.meta.hopMsPerToken, 2)}{' '}
                    ms hops ·{' '}
                    {m.meta.local ? 'ran in this tab' : `served by ${m.meta.peers?.map(shortId).join(' → ')}`}
                  </div>
                )}
              </div>
            ))}
          </div>
          {chat.status && <p style={{ color: 'var(--muted)' }}>{chat.status}</p>}
          <div style={{ marginTop: '1rem' }}>
            <textarea
              data-testid="prompt"
              placeholder="Write a prompt…"
              value={draft}
              onChange={(e) => setDraft(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && !e.shiftKey) {
                  e.preventDefault();
                  send();
                }
              }}
            />
            <div className="row" style={{ marginTop: '0.5rem' }}>
              <button data-testid="send" onClick={send} disabled={chat.busy || !draft.trim()}>
                Send
              </button>
              <button
                className="secondary"
                data-testid="stop"
                onClick={() => requester.abort()}
                disabled={!chat.busy}
              >
                Stop
              </button>
              <button className="secondary" onClick={() => requester.clear()} disabled={chat.busy}>
                Clear history
              </button>
            </div>
          </div>
        </div>
        <aside className="card">
          <h2>Settings</h2>
          <label className="field">
            Model
            <select value={s.model} onChange={(e) => requester.setSettings({ model: e.target.value })}>
              {(snapshot?.models ?? [{ id: s.model }]).map((m) => (
                <option key={m.id} value={m.id}>
                  {m.id}
                </option>
              ))}
            </select>
          </label>
          <label className="field">
            Temperature ({s.temperature})
            <input
              data-testid="temperature"
              type="number"
              min={0}
              max={2}
              step={0.1}
              value={s.temperature}
              onChange={(e) => requester.setSettings({ temperature: Math.max(0, Number(e.target.value)) })}
            />
          </label>
          <label className="field">
            Top-p ({s.topP})
            <input
              type="number"
              min={0.05}
              max={1}
              step={0.05}
              value={s.topP}
              onChange={(e) =>
                requester.setSettings({ topP: Math.min(1, Math.max(0.05, Number(e.target.value))) })
              }
            />
          </label>
          <label className="field">
            Max new tokens
            <input
              data-testid="max-tokens"
              type="number"
              min={1}
              max={4096}
              value={s.maxTokens}
              onChange={(e) =>
                requester.setSettings({ maxTokens: Math.max(1, Math.floor(Number(e.target.value))) })
              }
            />
          </label>
          <label className="field">
            Seed (empty: random per answer)
            <input
              data-testid="seed"
              type="number"
              min={1}
              step={1}
              value={s.seed ?? ''}
              onChange={(e) => {
                const v = Math.floor(Number(e.target.value));
                requester.setSettings({ seed: e.target.value === '' || !(v > 0) ? undefined : v });
              }}
            />
          </label>
        </aside>
      </div>
    </>
  );
}

/** Says that (and how) the answer survived losing ring peers; the data attribute carries the figures. */
function FailoverNote({ failovers }: { failovers: AnswerFailover[] | undefined }) {
  if (!failovers?.length) return null;
  const done = failovers.filter((f) => f.recoveryMs !== undefined);
  const how = {
    'link-close': 'its link closed',
    deadline: 'it missed its step deadline',
    'stage-error': 'a stage reported it',
    replanned: 'the network re-planned the ring',
  };
  return (
    <div className="meta" data-testid="answer-failover" data-failovers={JSON.stringify(failovers)}>
      {failovers.map((f, k) => (
        <div key={k}>
          failover: a ring peer{f.lostPeer ? ` (${shortId(f.lostPeer)})` : ''} was lost at position{' '}
          {f.position} ({how[f.cause]}){' '}
          {f.recoveryMs !== undefined
            ? `— the answer went on on a re-formed ring after ${num(f.recoveryMs / 1000, 1)} s (${f.replayed} positions replayed)`
            : '— re-forming the ring…'}
        </div>
      ))}
      {done.length > 0 && done.length === failovers.length && failovers.length > 1
        ? `${failovers.length} failovers in this answer`
        : null}
    </div>
  );
}

function RingStatus({ model }: { model: NetworkSnapshot['models'][number] | undefined }) {
  if (!model) return null;
  if (model.ring) {
    return (
      <p
        className="notice"
        style={{ borderColor: 'var(--accent)', background: '#10201a' }}
        data-testid="ring-status"
      >
        {model.id} is served by a ring of {model.ring.stages.length} peer
        {model.ring.stages.length > 1 ? 's' : ''}
        {singleRequest(model) ? ` (single request ≈ ${num(singleRequest(model), 1)} tok/s)` : ''}.
      </p>
    );
  }
  return (
    <p className="notice" data-testid="ring-status">
      No ring serves {model.id} yet
      {model.noRing?.missingBytes
        ? `: ${(model.noRing.missingBytes / 1e9).toFixed(2)} GB more peer memory is needed`
        : ''}
      . This tab will run it alone if it fits; open a Contribute tab to lend compute.
    </p>
  );
}
