/**
 * The chat as the app holds it, outside any page: what the person is typing (the prompt and each
 * settings field exactly as typed), the messages under the fields, and the check of a prompt
 * against the model's context before it is sent. The answer itself streams in the requester's
 * store, which also lives for the whole tab — so leaving the Chat page stops nothing; only Stop
 * (`requester.abort`) does. A zustand vanilla store; React only binds.
 */
import { createStore, type StoreApi } from 'zustand/vanilla';
import {
  checkPromptFit,
  keepLastTokens,
  parseSetting,
  SETTING_LIMITS,
  unrepresentableChars,
  unrepresentableError,
  type SettingField,
} from './chat-input.js';
import type { ChatMessage, ChatSettings } from './chat-history.js';
import type { ChatState } from './requester.js';
import { isLlama2cLocation } from '../model/open-model.js';
import type { ModelDescriptor } from '../protocol/signaling.js';
import type { Tokenizer } from '../tokenizer/types.js';

/** The settings fields as typed (strings: a field is never rewritten while the person types). */
export type SettingDrafts = Record<SettingField, string>;

/** What the chat form shows. */
export interface ChatSessionState {
  /** The prompt being written (kept while the person visits other pages). */
  draft: string;
  fields: SettingDrafts;
  /** One message per field with a problem, and `prompt` for the prompt itself. */
  errors: Partial<Record<SettingField | 'prompt', string>>;
  /** A prompt longer than the context, waiting for the person's choice (keep its end, or edit). */
  tooLong?: { promptTokens: number; contextLength: number; keep: number; message: string };
  /** A note about the last send (the answer was limited by the context, characters lost). */
  notice?: string;
  /** True while the prompt is being checked (the tokenizer may still be loading). */
  checking: boolean;
}

/** The parts of the requester the session drives. */
export interface ChatRequesterPort {
  readonly store: StoreApi<ChatState>;
  send(text: string): Promise<void>;
  setSettings(p: Partial<ChatSettings>): void;
}

export interface ChatSessionOptions {
  requester: ChatRequesterPort;
  /** Loads (and caches) a model's tokenizer. */
  tokenizer: (model: ModelDescriptor) => Promise<Tokenizer>;
  /**
   * A model's context length known before the requester's first ring answer (the page reads it
   * from `/api/network`), so the max-tokens bound is the model's from the start, not the generic one.
   */
  contextLength?: (model: string) => number | undefined;
}

export interface ChatSession {
  readonly store: StoreApi<ChatSessionState>;
  setDraft(text: string): void;
  /** Keeps what was typed; clears the field's message until it is checked again. */
  setField(field: SettingField, raw: string): void;
  /** Checks a field (on blur): a valid value goes to the settings, a bad one gets its message. */
  commitField(field: SettingField): boolean;
  /** Checks every field and the prompt, then sends (or asks about a too-long prompt). */
  submit(): Promise<void>;
  /** Accepts the offer: keeps the last tokens of the too-long prompt and sends it. */
  keepEnd(): Promise<void>;
  /** Closes the too-long offer (the prompt stays as typed). */
  dismissTooLong(): void;
  /** The model's bound on new tokens (context − BOS), or the form's default bound. */
  maxTokensLimit(): number;
}

const drafts = (s: ChatSettings): SettingDrafts => ({
  temperature: String(s.temperature),
  topP: String(s.topP),
  maxTokens: String(s.maxTokens),
  seed: s.seed === undefined ? '' : String(s.seed),
});

/** Creates the tab's chat session over its requester. */
export function createChatSession(o: ChatSessionOptions): ChatSession {
  const req = o.requester;
  const store = createStore<ChatSessionState>()(() => ({
    draft: '',
    fields: drafts(req.store.getState().settings),
    errors: {},
    checking: false,
  }));
  const set = (p: Partial<ChatSessionState>) => store.setState(p);
  const get = () => store.getState();

  /** The current model's descriptor, from the coordinator's latest ring / no-ring answer. */
  const descriptor = (): ModelDescriptor | undefined => {
    const s = req.store.getState();
    const r = s.rings[s.settings.model];
    return r?.type === 'ring' ? r.model : r?.descriptor;
  };
  const maxTokensLimit = () => {
    const context = descriptor()?.contextLength ?? o.contextLength?.(req.store.getState().settings.model);
    return context ? Math.min(SETTING_LIMITS.maxTokens.max, context - 1) : SETTING_LIMITS.maxTokens.max;
  };

  const commitField = (field: SettingField): boolean => {
    const r = parseSetting(field, get().fields[field], maxTokensLimit());
    const errors = { ...get().errors };
    if (!r.ok) {
      errors[field] = r.error.message;
      set({ errors });
      return false;
    }
    delete errors[field];
    set({ errors });
    req.setSettings({ [field]: r.value });
    return true;
  };

  /** The prompt's tokens as the requester will encode them (with the chat template when it has one). */
  const promptTokens = (t: Tokenizer, d: ModelDescriptor, text: string, history: ChatMessage[]): number => {
    if (t.applyChatTemplate && !isLlama2cLocation(d.url)) {
      const turns = [...history.filter((m) => !m.meta?.error), { role: 'user' as const, text }];
      return t.encode(
        t.applyChatTemplate(
          turns.map((m) => ({ role: m.role, content: m.text })),
          { addGenerationPrompt: true },
        ),
      ).length;
    }
    return t.encode(text, { bos: true }).length;
  };

  const send = async (text: string): Promise<void> => {
    const fieldsOk = (['temperature', 'topP', 'maxTokens', 'seed'] as const)
      .map((f) => commitField(f))
      .every(Boolean);
    if (!fieldsOk) return;
    if (!text.trim()) {
      set({ errors: { ...get().errors, prompt: 'Write a prompt first.' } });
      return;
    }
    if (req.store.getState().busy) return;
    const d = descriptor();
    let notice: string | undefined;
    if (d) {
      set({ checking: true });
      let t: Tokenizer | undefined;
      try {
        t = await o.tokenizer(d);
      } catch {
        // The requester loads the tokenizer again and reports a failure in the answer itself.
      } finally {
        set({ checking: false });
      }
      if (t) {
        const s = req.store.getState();
        const n = promptTokens(t, d, text.trim(), s.messages);
        const fit = checkPromptFit({
          promptTokens: n,
          contextLength: d.contextLength,
          maxTokens: s.settings.maxTokens,
        });
        if (fit.kind === 'too-long') {
          set({
            tooLong: {
              promptTokens: fit.promptTokens,
              contextLength: fit.contextLength,
              keep: fit.keep,
              message: fit.error.message,
            },
          });
          return;
        }
        const lost = unrepresentableError(s.settings.model, unrepresentableChars(t, text));
        notice = [
          lost?.message,
          fit.clamped
            ? `Only ${fit.maxNewTokens} new tokens fit after this prompt (the model reads ${d.contextLength} tokens at most): the answer stops there.`
            : undefined,
        ]
          .filter(Boolean)
          .join(' ');
      }
    }
    const errors = { ...get().errors };
    delete errors.prompt;
    set({ draft: '', errors, tooLong: undefined, notice: notice || undefined });
    await req.send(text);
  };

  return {
    store,
    setDraft(text) {
      const errors = { ...get().errors };
      delete errors.prompt;
      set({ draft: text, errors, tooLong: undefined });
    },
    setField(field, raw) {
      const errors = { ...get().errors };
      delete errors[field];
      set({ fields: { ...get().fields, [field]: raw }, errors });
    },
    commitField,
    submit: () => send(get().draft),
    async keepEnd() {
      const offer = get().tooLong;
      const d = descriptor();
      if (!offer || !d) return;
      const t = await o.tokenizer(d);
      const tail = keepLastTokens(t, get().draft, offer.keep);
      set({ draft: tail, tooLong: undefined });
      await send(tail);
    },
    dismissTooLong: () => set({ tooLong: undefined }),
    maxTokensLimit,
  };
}
