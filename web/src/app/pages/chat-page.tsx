import { memo } from 'react';
import { useStore } from 'zustand';
import { useShallow } from 'zustand/react/shallow';
import type { ChatMessage } from '../../../../shared/app/chat-history';
import type { ChatState } from '../../../../shared/app/requester';
import { useCoalesced } from '../use-coalesced';
import { num, shortId, singleRequest, withShortPeerIds } from '../format';
import { useNetworkView, type NetworkSnapshot } from '../store';
import type { AnswerFailover } from '../../../../shared/app/requester';
import { verificationLine, type AnswerVerification } from '../../../../shared/app/validated-ring';
import { answerEndNote, SETTING_LIMITS, type SettingField } from '../../../../shared/app/chat-input';
import { chatSession, localMemoryBytes, requester } from '../tab';
import { DEFAULT_DRAFT, DRAFT_MAX_MODEL_BYTES, draftUnavailable } from '../../../../shared/app/draft-setting';
import type { AnswerSpeculative } from '../../../../shared/app/chat-history';
import { UsageCard } from './ledger-cards';

/**
 * Chat with a model whose layers run across other people's tabs. The answer and the form live in
 * the tab's stores (`requester`, `chatSession`): leaving this page stops nothing, only Stop does.
 */
export function ChatPage() {
  // Not the streamed answer: that changes per token and only <Messages> renders it.
  const chat = useStore(
    requester.store,
    useShallow((st) => ({ messages: st.messages, busy: st.busy, status: st.status, settings: st.settings })),
  );
  const form = useStore(chatSession.store);
  const snapshot = useNetworkView((s) => s.snapshot);
  const s = chat.settings;
  const model = snapshot?.models.find((m) => m.id === s.model);
  const sendDisabled = chat.busy || form.checking || !form.draft.trim();
  // The temperature as typed (it is committed on blur or Send), so the reason shows at once.
  const typed = Number(form.fields.temperature);
  const draftWhy = draftUnavailable({
    temperature: form.fields.temperature.trim() !== '' && Number.isFinite(typed) ? typed : s.temperature,
    modelBytes: model?.totalBytes,
    budgetBytes: localMemoryBytes(),
    ...(s.security !== undefined ? { security: s.security } : {}),
  });

  return (
    <>
      <p className="lead">
        Ask the network. Your tab turns the prompt into tokens, the ring&apos;s tabs each run their slice of
        the model and pass a small vector along, and the answer streams back here.
      </p>
      <RingStatus model={model} />
      <div className="chat">
        <div>
          <Messages messages={chat.messages} busy={chat.busy} />
          <p role="status" style={{ color: 'var(--muted)', minHeight: '1.2em' }} data-testid="chat-status">
            {chat.status ?? (chat.busy ? 'writing the answer…' : '')}
          </p>
          {form.notice && (
            <p className="notice" data-testid="chat-notice">
              {withShortPeerIds(form.notice)}
            </p>
          )}
          <form
            style={{ marginTop: '1rem' }}
            onSubmit={(e) => {
              e.preventDefault();
              void chatSession.submit();
            }}
          >
            <label className="visually-hidden" htmlFor="prompt">
              Prompt
            </label>
            <textarea
              id="prompt"
              data-testid="prompt"
              placeholder="Write a prompt…"
              value={form.draft}
              aria-invalid={form.errors.prompt || form.tooLong ? true : undefined}
              aria-describedby="prompt-error"
              onChange={(e) => chatSession.setDraft(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && !e.shiftKey) {
                  e.preventDefault();
                  if (!sendDisabled) void chatSession.submit();
                }
              }}
            />
            <div id="prompt-error" role="alert">
              {form.errors.prompt && <p className="field-error">{form.errors.prompt}</p>}
              {form.tooLong && (
                <div className="notice" data-testid="prompt-too-long" data-keep={form.tooLong.keep}>
                  {form.tooLong.message}
                  <div className="row" style={{ marginTop: '0.5rem' }}>
                    <button type="button" data-testid="keep-end" onClick={() => void chatSession.keepEnd()}>
                      Keep the last {form.tooLong.keep} tokens and send
                    </button>
                    <button type="button" className="secondary" onClick={() => chatSession.dismissTooLong()}>
                      Edit the prompt
                    </button>
                  </div>
                </div>
              )}
            </div>
            <div className="row" style={{ marginTop: '0.5rem' }}>
              <button
                type="submit"
                data-testid="send"
                disabled={sendDisabled}
                title={
                  chat.busy
                    ? 'An answer is being written: wait for it or press Stop'
                    : !form.draft.trim()
                      ? 'Write a prompt first'
                      : undefined
                }
              >
                {form.checking ? 'Checking…' : 'Send'}
              </button>
              <button
                type="button"
                className="secondary"
                data-testid="stop"
                onClick={() => requester.abort()}
                disabled={!chat.busy}
              >
                Stop
              </button>
              <button
                type="button"
                className="secondary"
                onClick={() => requester.clear()}
                disabled={chat.busy}
              >
                Clear history
              </button>
            </div>
          </form>
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
            Security level (rings that run every step and are compared)
            <select
              data-testid="security-level"
              value={s.security === 2 && s.spot ? '2s' : (s.security ?? '')}
              onChange={(e) =>
                requester.setSettings({
                  security: e.target.value ? Number.parseInt(e.target.value, 10) : undefined,
                  spot: e.target.value === '2s' ? {} : undefined,
                })
              }
            >
              <option value="">server default</option>
              <option value="1">k = 1 (no validation)</option>
              <option value="2s">k = 2, spot checks</option>
              <option value="2">k = 2 (a validator ring)</option>
              <option value="3">k = 3 (two validator rings)</option>
            </select>
            {/* The closed select is too narrow for the spot mode's explanation: it goes under it. */}
            {s.security === 2 && s.spot && (
              <span data-testid="security-hint" style={{ color: 'var(--muted)', fontSize: '0.8rem' }}>
                A validator ring re-runs a sampled fraction of the steps (more for peers with little validated
                work).
              </span>
            )}
          </label>
          <div className="field" style={{ marginBottom: '0.75rem' }}>
            <label
              style={{
                color: 'var(--muted)',
                display: 'flex',
                gap: '0.5rem',
                alignItems: 'center',
                fontSize: '0.9rem',
              }}
            >
              <input
                type="checkbox"
                data-testid="draft"
                checked={!!s.draft && !draftWhy}
                disabled={!!draftWhy}
                aria-describedby="draft-why"
                onChange={(e) =>
                  requester.setSettings({ draft: e.target.checked ? (s.draft ?? DEFAULT_DRAFT) : undefined })
                }
              />
              <span>
                Draft locally (speculative decoding: this tab proposes up to {s.draft?.k ?? DEFAULT_DRAFT.k}{' '}
                tokens with a 4-bit copy of the model, the ring checks them in one lap; same answer)
              </span>
            </label>
            <span
              id="draft-why"
              data-testid="draft-why"
              style={{ color: 'var(--muted)', fontSize: '0.8rem' }}
            >
              {draftWhy
                ? `Off: ${draftWhy}.`
                : `Greedy only (temperature 0), models up to ${DRAFT_MAX_MODEL_BYTES / 2 ** 20} MB: this tab downloads the whole model.`}
            </span>
            {s.draft && !draftWhy && (
              <label className="field" style={{ marginTop: '0.5rem', marginBottom: 0 }}>
                Tokens drafted per lap
                <select
                  data-testid="draft-k"
                  value={s.draft.k}
                  onChange={(e) =>
                    requester.setSettings({ draft: { ...s.draft!, k: Number(e.target.value) } })
                  }
                >
                  {[1, 2, 3, 4, 6, 8].map((k) => (
                    <option key={k} value={k}>
                      {k}
                    </option>
                  ))}
                </select>
              </label>
            )}
          </div>
          <SettingInput
            field="temperature"
            label={`Temperature (${SETTING_LIMITS.temperature.min}–${SETTING_LIMITS.temperature.max}; 0 = always the likeliest token)`}
            value={form.fields.temperature}
            error={form.errors.temperature}
          />
          <SettingInput
            field="topP"
            label={`Top-p (${SETTING_LIMITS.topP.min}–${SETTING_LIMITS.topP.max})`}
            value={form.fields.topP}
            error={form.errors.topP}
          />
          <SettingInput
            field="maxTokens"
            label={`Max new tokens (1–${chatSession.maxTokensLimit()})`}
            value={form.fields.maxTokens}
            error={form.errors.maxTokens}
            integer
          />
          <SettingInput
            field="seed"
            label="Seed (empty: random per answer)"
            value={form.fields.seed}
            error={form.errors.seed}
            integer
          />
          <UsageCard refresh={chat.busy} />
        </aside>
      </div>
    </>
  );
}

/** Least time between two renders of the streamed answer, ms (about 3 frames; ~20 renders a second). */
const STREAM_EVERY_MS = 50;

type Streaming = ChatState['streaming'];
const selectStreaming = (st: ChatState): Streaming => st.streaming;
/** Starting or ending an answer, a failover note: shown at once; streamed text: coalesced. */
const streamingUrgent = (shown: Streaming | undefined, next: Streaming): boolean =>
  !shown || !next || shown.index !== next.index || shown.failovers !== next.failovers;

/**
 * The conversation: finished messages render once (memoised); the answer being written renders at
 * most every {@link STREAM_EVERY_MS} with every token received so far.
 */
function Messages({ messages, busy }: { messages: ChatMessage[]; busy: boolean }) {
  const streaming = useCoalesced(requester.store, selectStreaming, STREAM_EVERY_MS, streamingUrgent);
  return (
    <div className="messages" data-testid="messages" aria-live="polite" aria-busy={busy}>
      {messages.length === 0 && (
        <p style={{ color: 'var(--muted)' }}>
          Try “Once upon a time” — the default model is a tiny story writer (stories260K).
        </p>
      )}
      {messages.map((m, i) => (
        <MessageView key={i} m={m} streaming={streaming?.index === i ? streaming : undefined} />
      ))}
    </div>
  );
}

/** One message; `streaming` while it is the answer being written. */
const MessageView = memo(function MessageView({ m, streaming }: { m: ChatMessage; streaming?: Streaming }) {
  return (
    <div
      className={`msg ${m.role}`}
      data-testid={m.role === 'assistant' ? 'answer' : 'question'}
      data-tokens={streaming ? (streaming.tokens ?? 0) : undefined}
    >
      <span data-testid={m.role === 'assistant' ? 'answer-text' : undefined}>
        {streaming ? streaming.text : m.text}
      </span>
      <FailoverNote failovers={streaming ? streaming.failovers : m.meta?.failovers} />
      {m.meta?.error && (
        <div className="meta error" data-testid="answer-error">
          {withShortPeerIds(m.meta.error)}
        </div>
      )}
      {m.role === 'assistant' && m.meta?.done && !m.meta.error && (
        <>
          <div className="meta" data-testid="answer-meta" data-peers={m.meta.peers?.join(',')}>
            measured: prefill {num(m.meta.prefillTokPerS)} tok/s · decode {num(m.meta.decodeTokPerS)} tok/s ·
            per token {num(m.meta.computeMsPerToken, 2)} ms compute + {num(m.meta.hopMsPerToken, 2)} ms{' '}
            {m.meta.local ? 'other (scheduling, sampling)' : 'hops'} ·{' '}
            {m.meta.local ? 'ran in this tab' : `served by ${m.meta.peers?.map(shortId).join(' → ')}`}
          </div>
          <DraftNote d={m.meta.speculative} />
          <VerificationNote v={m.meta.verification} />
          {answerEndNote(m.meta.end, m.meta.contextLength) && (
            <div className="meta" data-testid="answer-end" data-end={m.meta.end}>
              {answerEndNote(m.meta.end, m.meta.contextLength)}
            </div>
          )}
        </>
      )}
    </div>
  );
});

/** A settings field: kept exactly as typed, checked on blur (and on send), its message beneath it. */
function SettingInput(p: {
  field: SettingField;
  label: string;
  value: string;
  error: string | undefined;
  integer?: boolean;
}) {
  const testId = { temperature: 'temperature', topP: 'top-p', maxTokens: 'max-tokens', seed: 'seed' }[
    p.field
  ];
  return (
    <label className="field">
      {p.label}
      <input
        data-testid={testId}
        type="text"
        inputMode={p.integer ? 'numeric' : 'decimal'}
        value={p.value}
        aria-invalid={p.error ? true : undefined}
        aria-describedby={`${testId}-error`}
        onChange={(e) => chatSession.setField(p.field, e.target.value)}
        onBlur={() => chatSession.commitField(p.field)}
      />
      <span id={`${testId}-error`} className="field-error" data-testid={`${testId}-error`} role="alert">
        {p.error ?? ''}
      </span>
    </label>
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
        role="status"
      >
        {model.id} is served by a ring of {model.ring.stages.length} peer
        {model.ring.stages.length > 1 ? 's' : ''}
        {singleRequest(model)
          ? ` (one request ≈ ${num(singleRequest(model), 1)} tok/s, ${model.observedTokensPerSecond ? 'measured' : 'planned'})`
          : ''}
        .
      </p>
    );
  }
  return (
    <p className="notice" data-testid="ring-status" role="status">
      No ring serves {model.id} yet
      {model.noRing?.missingBytes
        ? `: ${(model.noRing.missingBytes / 1e9).toFixed(2)} GB more peer memory is needed`
        : ''}
      . This tab will run it alone if it fits; open a Contribute tab to lend compute.
    </p>
  );
}

/** One line under a drafted answer: drafted tokens the ring accepted, laps, tokens per lap. */
function DraftNote({ d }: { d: AnswerSpeculative | undefined }) {
  if (!d) return null;
  return (
    <div
      className="meta"
      data-testid="answer-draft"
      data-accepted={d.accepted}
      data-drafted={d.drafted}
      data-laps={d.laps}
      data-tokens-per-lap={d.tokensPerLap}
    >
      drafted ({d.format}, k = {d.k}): {d.accepted} of {d.drafted} drafted tokens accepted · {d.laps} ring
      laps · {num(d.tokensPerLap, 2)} tokens per lap
    </div>
  );
}

/** One line under an answer validated at k >= 2: level, what was compared on how many steps, what was not. */
function VerificationNote({ v }: { v: AnswerVerification | undefined }) {
  if (!v) return null;
  return (
    <div
      className="meta"
      data-testid="answer-verification"
      data-k={v.k}
      data-agreeing={v.ringsAgreeing}
      data-deviants={v.deviants.join(',')}
      data-spot={v.spot ? v.spot.f : undefined}
      data-unchecked-from={v.uncheckedFrom?.step}
    >
      <span className="badge">{v.deviants.length ? 'deviant caught' : v.spot ? 'sampled' : 'verified'}</span>{' '}
      {verificationLine(v)}
    </div>
  );
}
