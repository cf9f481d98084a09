/**
 * The one formatter of zod validation issues, used wherever input is validated at a boundary
 * (protocol frames, config files, planner input, device profiles): a readable one-line summary for
 * the message, and a bounded list of `{ path, message }` for `details.issues`.
 */
import type { z } from 'zod';

/** How many issues a message or details list names (the rest are counted). */
export const MAX_LISTED_ISSUES = 8;

/** One validation issue as it appears in `details.issues`. */
export interface IssueDetail {
  /** Dotted path with `[i]` indices, `(root)` for the value itself. */
  path: string;
  message: string;
}

/** Formats an issue path as `a.b[2].c` (`(root)` when empty). */
export function formatIssuePath(path: readonly PropertyKey[]): string {
  const s = path
    .map((p, k) => (typeof p === 'number' ? `[${p}]` : k === 0 ? String(p) : `.${String(p)}`))
    .join('');
  return s || '(root)';
}

/** `path: message; ...` for the first {@link MAX_LISTED_ISSUES} issues, so a person sees what to fix. */
export function formatZodIssues(error: z.ZodError, max = MAX_LISTED_ISSUES): string {
  return error.issues
    .slice(0, max)
    .map((i) => `${formatIssuePath(i.path)}: ${i.message}`)
    .concat(error.issues.length > max ? [`... and ${error.issues.length - max} more`] : [])
    .join('; ');
}

/** The first {@link MAX_LISTED_ISSUES} issues as plain data for `details.issues`. */
export function zodIssueDetails(error: z.ZodError, max = MAX_LISTED_ISSUES): IssueDetail[] {
  return error.issues.slice(0, max).map((i) => ({ path: formatIssuePath(i.path), message: i.message }));
}
