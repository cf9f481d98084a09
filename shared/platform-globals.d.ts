/**
 * The few host APIs shared/ relies on that exist in every target (browsers, workers, Node >= 20)
 * but are not part of the ES library. Only shared/'s own tsconfig includes this file; the web and
 * server areas get the real declarations from their DOM / node libs.
 */
interface AbortSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
  throwIfAborted(): void;
}
declare class AbortController {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: ArrayBufferView | ArrayBuffer, options?: { stream?: boolean }): string;
}
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare function setTimeout(handler: () => void, timeout?: number): unknown;
declare function clearTimeout(id: unknown): void;
declare function setInterval(handler: () => void, timeout?: number): unknown;
declare function clearInterval(id: unknown): void;
declare const crypto: { randomUUID(): string; getRandomValues<T extends ArrayBufferView>(a: T): T };
declare const performance: { now(): number };
declare function btoa(data: string): string;
declare function atob(data: string): string;
declare const console: {
  log(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};
