import { useEffect, useRef, useState } from 'react';
import { num, shortId } from '../format';
import { ask } from '../requester';
import { useApp, type NetworkSnapshot } from '../store';

/** Chat with a model whose layers run across other people's tabs. */
export function ChatPage() {
  const chat = useApp((s) => s.chat);
  const snapshot = useApp((s) => s.network.snapshot);
  const patch = useApp((s) => s.patchChat);
  const update = useApp((s) => s.updateMessage);
  const [draft, setDraft] = useState('');
  const abort = useRef<AbortController | undefined>(undefined);
  const s = chat.settings;
  const model = snapshot?.models.find((m) => m.id === s.model);

  useEffect(() => () => abort.current?.abort(), []);

  const send = async () => {
    const text = draft.trim();
    if (!text || chat.busy) return;
    setDraft('');
    const history = [...useApp.getState().chat.messages, { role: 'user' as const, text }];
    const index = history.length;
    patch({
      messages: [...history, { role: 'assistant', text: '', meta: { model: s.model } }],
      busy: true,
      status: 'finding a ring…',
    });
    const ac = new AbortController();
    abort.current = ac;
    try {
      const r = await ask({
        settings: s,
        history,
        signal: ac.signal,
        onText: (t) => {
          update(index, { text: t });
          if (useApp.getState().chat.status) patch({ status: undefined });
        },
      });
      update(index, { text: r.text, meta: { model: s.model, ...r.stats, done: true } });
    } catch (e) {
      update(index, {
        meta: { model: s.model, error: e instanceof Error ? e.message : String(e), done: true },
      });
    } finally {
      patch({ busy: false, status: undefined });
      abort.current = undefined;
    }
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
              >
                <span data-testid={m.role === 'assistant' ? 'answer-text' : undefined}>{m.text}</span>
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
                  void send();
                }
              }}
            />
            <div className="row" style={{ marginTop: '0.5rem' }}>
              <button data-testid="send" onClick={() => void send()} disabled={chat.busy || !draft.trim()}>
                Send
              </button>
              <button
                className="secondary"
                data-testid="stop"
                onClick={() => abort.current?.abort()}
                disabled={!chat.busy}
              >
                Stop
              </button>
              <button className="secondary" onClick={() => patch({ messages: [] })} disabled={chat.busy}>
                Clear history
              </button>
            </div>
          </div>
        </div>
        <aside className="card">
          <h2>Settings</h2>
          <label className="field">
            Model
            <select value={s.model} onChange={(e) => patch({ settings: { ...s, model: e.target.value } })}>
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
              onChange={(e) =>
                patch({ settings: { ...s, temperature: Math.max(0, Number(e.target.value)) } })
              }
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
                patch({ settings: { ...s, topP: Math.min(1, Math.max(0.05, Number(e.target.value))) } })
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
                patch({ settings: { ...s, maxTokens: Math.max(1, Math.floor(Number(e.target.value))) } })
              }
            />
          </label>
        </aside>
      </div>
    </>
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
        {model.predictedTokensPerSecond ? ` (planned ≈ ${num(model.predictedTokensPerSecond, 0)} tok/s)` : ''}
        .
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
