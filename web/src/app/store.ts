/** The app's state (zustand): one store, three slices — contribute, chat, network. */
import { create } from 'zustand';
import type { DeviceProfile } from '../../../shared/device/profile';
import type { ModelDescriptor, PeerCapability } from '../../../shared/protocol/signaling';
import type { RingStageStats } from '../../../shared/ring/ring-stage';

export type ContributePhase =
  'idle' | 'connecting' | 'profiling' | 'waiting' | 'loading' | 'serving' | 'unassigned' | 'paused' | 'error';

export interface ContributeState {
  phase: ContributePhase;
  peerId?: string;
  profile?: DeviceProfile;
  capability?: PeerCapability;
  backend?: string;
  backendReason?: string;
  assignment?: {
    model: string;
    range: [number, number];
    units: number;
    prev: string | null;
    next: string | null;
    epoch: number;
    weightFormat: string;
  };
  unassignedReason?: string;
  download?: {
    bytesDone: number;
    bytesTotal: number;
    fetched: number;
    startedAt: number;
    finishedAt?: number;
  };
  stats: RingStageStats & { joinedAt?: number };
  dutyCycle: number;
  autoPause: boolean;
  error?: string;
}

export interface ChatMessage {
  role: 'user' | 'assistant';
  text: string;
  meta?: {
    model: string;
    prefillTokPerS?: number;
    decodeTokPerS?: number;
    peers?: string[];
    local?: boolean;
    computeMsPerToken?: number;
    hopMsPerToken?: number;
    error?: string;
    done?: boolean;
  };
}

export interface ChatSettings {
  model: string;
  temperature: number;
  topP: number;
  maxTokens: number;
}

export interface ChatState {
  messages: ChatMessage[];
  busy: boolean;
  status?: string;
  settings: ChatSettings;
}

export interface AppState {
  contribute: ContributeState;
  chat: ChatState;
  network: { snapshot?: NetworkSnapshot; error?: string; updatedAt?: number };
  patchContribute(p: Partial<ContributeState>): void;
  patchChat(p: Partial<ChatState>): void;
  updateMessage(index: number, m: Partial<ChatMessage>): void;
}

/** The subset of `/api/network` the UI draws. */
export interface NetworkSnapshot {
  peers: {
    id: string;
    roles: string[];
    connected: boolean;
    category?: string;
    assignment?: { kind: string; range?: [number, number]; model?: string; reason?: string };
  }[];
  profiles: Record<string, PeerCapability>;
  models: {
    id: string;
    descriptor?: ModelDescriptor;
    units: number;
    totalBytes: number;
    ring: { stages: { peer: string; range: [number, number] }[]; epoch: number } | null;
    noRing: { reason: string; missingBytes?: number } | null;
    predictedTokensPerSecond?: number;
    pipelinedTokensPerSecond?: number;
  }[];
  rings: {
    ringId: string;
    model: string;
    epoch: number;
    stages: { peer: string; range: [number, number] }[];
  }[];
}

const HISTORY_KEY = 'ringwork.chat.v1';

function loadHistory(): ChatMessage[] {
  try {
    const raw = sessionStorage.getItem(HISTORY_KEY);
    return raw ? (JSON.parse(raw) as ChatMessage[]) : [];
  } catch {
    return [];
  }
}

export const useApp = create<AppState>((set) => ({
  contribute: {
    phase: 'idle',
    stats: { stepsServed: 0, tokensServed: 0, computeMs: 0, openSessions: 0 },
    dutyCycle: 1,
    autoPause: false,
  },
  chat: {
    messages: loadHistory(),
    busy: false,
    settings: { model: 'stories260K', temperature: 0.8, topP: 0.9, maxTokens: 200 },
  },
  network: {},
  patchContribute: (p) => set((s) => ({ contribute: { ...s.contribute, ...p } })),
  patchChat: (p) =>
    set((s) => {
      const chat = { ...s.chat, ...p };
      // History is kept in the tab (sessionStorage): a reload keeps it, another tab does not see it.
      if (p.messages) sessionStorage.setItem(HISTORY_KEY, JSON.stringify(chat.messages.slice(-100)));
      return { chat };
    }),
  updateMessage: (index, m) =>
    set((s) => {
      const messages = s.chat.messages.slice();
      messages[index] = {
        ...messages[index]!,
        ...m,
        meta: { ...messages[index]!.meta!, ...m.meta } as ChatMessage['meta'],
      };
      sessionStorage.setItem(HISTORY_KEY, JSON.stringify(messages.slice(-100)));
      return { chat: { ...s.chat, messages } };
    }),
}));
