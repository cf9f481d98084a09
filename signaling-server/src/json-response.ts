/**
 * One way to answer an HTTP request with JSON: the server's own routes (network, identity, ledger)
 * all send no-store JSON with an exact length, so a client never caches a session's answer.
 */
import type { ServerResponse } from 'node:http';

/** Sends `text` (already JSON) with `status`, the given headers, no-store and its byte length. */
export function sendJsonText(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string>,
): void {
  res
    .writeHead(status, {
      ...headers,
      'Content-Type': 'application/json; charset=utf-8',
      'Cache-Control': 'no-store',
      'Content-Length': Buffer.byteLength(text),
    })
    .end(text);
}

/** Sends `body` as JSON; see {@link sendJsonText}. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string>,
): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}
