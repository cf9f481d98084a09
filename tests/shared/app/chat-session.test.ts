import { beforeAll, describe, expect, it, vi } from 'vitest';
import { keepLastTokens } from '../../../shared/app/chat-input';
import { createChatSession } from '../../../shared/app/chat-session';
import { stories260KTokenizer } from '../../helpers/engine';
import { loadGolden } from '../../helpers/golden';
import { createFakeSignalingHub } from '../../helpers/memory-signaling';
import { scaled } from '../../helpers/timeouts';
import { STORIES, pid, requesterOn, warmUpOrt } from './app-fixture';

const golden = loadGolden();

/** A real requester (whole model run alone here) behind a coordinator that has no ring, and its chat session. */
async function setup() {
  const hub = createFakeSignalingHub();
  hub.onSend((from, m) => {
    if (m.type === 'ring-request')
      hub.push(from, {
        type: 'no-ring',
        model: 'stories260K',
        reason: 'no contributors',
        descriptor: STORIES,
        totalBytes: 1e6,
      });
  });
  const requester = requesterOn(hub, pid('req'));
  await requester.start();
  await vi.waitFor(() => expect(requester.store.getState().rings.stories260K).toBeDefined());
  const session = createChatSession({ requester, tokenizer: async () => stories260KTokenizer() });
  return { requester, session };
}

const answers = (r: Awaited<ReturnType<typeof setup>>['requester']) =>
  r.store.getState().messages.filter((m) => m.role === 'assistant');

describe('chat session', () => {
  beforeAll(() => warmUpOrt(), scaled(60_000));

  it('bounds max tokens by the model before any ring answer when the page knows its context', () => {
    // A requester that has not asked for a ring yet (the Chat page before its first question).
    const requester = requesterOn(createFakeSignalingHub(), pid('fresh'));
    expect(requester.store.getState().rings.stories260K).toBeUndefined();
    const blind = createChatSession({ requester, tokenizer: async () => stories260KTokenizer() });
    expect(blind.maxTokensLimit()).toBe(4096);
    const told = createChatSession({
      requester,
      tokenizer: async () => stories260KTokenizer(),
      contextLength: (model) => (model === 'stories260K' ? 512 : undefined),
    });
    expect(told.maxTokensLimit()).toBe(511);
    told.setField('maxTokens', '1000');
    expect(told.commitField('maxTokens')).toBe(false);
    expect(told.store.getState().errors.maxTokens).toMatch(/at most 511/);
  });

  it('fields keep what was typed; a bad value gets a message and changes no setting; a good one applies on blur', async () => {
    const { requester, session } = await setup();
    session.setField('maxTokens', '');
    expect(session.store.getState().fields.maxTokens).toBe('');
    session.setField('temperature', '-0.5');
    expect(session.commitField('temperature')).toBe(false);
    expect(session.store.getState().fields.temperature).toBe('-0.5');
    expect(session.store.getState().errors.temperature).toMatch(/cannot be negative/);
    expect(requester.store.getState().settings.temperature).toBe(0.8);
    // The model is known (context 512): its bound applies.
    expect(session.maxTokensLimit()).toBe(511);
    session.setField('maxTokens', '1000000');
    expect(session.commitField('maxTokens')).toBe(false);
    expect(session.store.getState().errors.maxTokens).toMatch(/at most 511/);
    // A bad field blocks sending; the prompt stays as typed.
    session.setDraft('Once upon a time');
    await session.submit();
    expect(requester.store.getState().messages).toEqual([]);
    expect(session.store.getState().draft).toBe('Once upon a time');
    session.setField('temperature', '0');
    session.setField('maxTokens', '60');
    expect(session.commitField('temperature')).toBe(true);
    expect(session.store.getState().errors.temperature).toBeUndefined();
    await session.submit();
    expect(session.store.getState().draft).toBe('');
    const [a] = answers(requester);
    expect(a!.text + '\n').toBe(golden.text);
    expect(a!.meta?.end).toBe('max-tokens');
    // An empty prompt is refused with a message.
    await session.submit();
    expect(session.store.getState().errors.prompt).toMatch(/Write a prompt/);
  });

  it(
    'a prompt longer than the context is held with an offer; keeping its end sends a prompt that fits',
    async () => {
      const { requester, session } = await setup();
      session.setField('temperature', '0');
      session.setField('maxTokens', '8');
      const long = 'The little dog ran to the park and played with a red ball. '.repeat(90);
      session.setDraft(long);
      await session.submit();
      const offer = session.store.getState().tooLong;
      expect(offer).toMatchObject({ contextLength: 512, keep: 512 - 8 });
      expect(offer!.promptTokens).toBeGreaterThan(1000);
      expect(requester.store.getState().messages).toEqual([]);
      expect(session.store.getState().draft).toBe(long);
      await session.keepEnd();
      const [q, a] = requester.store.getState().messages;
      expect(long.trim().endsWith(q!.text)).toBe(true);
      expect(stories260KTokenizer().encode(q!.text).length).toBeLessThanOrEqual(offer!.keep);
      expect(a!.meta?.error).toBeUndefined();
      expect(a!.text.startsWith(q!.text.slice(0, 40))).toBe(true);
      expect(a!.text.length).toBeGreaterThan(q!.text.length);
    },
    scaled(60_000),
  );

  it(
    'a prompt that leaves less room than max tokens is sent with a note, and the answer says it stopped at the context end',
    async () => {
      const { requester, session } = await setup();
      session.setField('temperature', '0');
      session.setField('maxTokens', '200');
      const t = stories260KTokenizer();
      // A few tokens of room: the story cannot reach its own end first.
      const prompt = keepLastTokens(
        t,
        'The little dog ran to the park and played with a red ball. '.repeat(40),
        508,
      ).trim();
      const n = t.encode(prompt, { bos: true }).length;
      expect(n).toBeGreaterThan(400);
      expect(n).toBeLessThan(512);
      session.setDraft(prompt);
      await session.submit();
      expect(session.store.getState().notice).toMatch(new RegExp(`Only ${512 - n + 1} new tokens fit`));
      const [a] = answers(requester);
      expect(a!.meta).toMatchObject({ end: 'context', contextLength: 512 });
    },
    scaled(60_000),
  );

  it(
    'emoji and CJK come back as characters (byte tokens assembled as UTF-8), not dropped',
    async () => {
      const { requester, session } = await setup();
      session.setField('temperature', '0');
      session.setField('maxTokens', '10');
      session.setDraft('Once upon a time 🐱 saw a 猫 and said こんにちは');
      await session.submit();
      const [a] = answers(requester);
      for (const ch of ['🐱', '猫', 'こんにちは']) expect(a!.text).toContain(ch);
      expect(a!.text).not.toContain('\uFFFD');
      expect(session.store.getState().notice).toBeUndefined();
    },
    scaled(60_000),
  );
});
