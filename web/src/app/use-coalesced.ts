/**
 * A store's selected value for React, re-rendered at most once per interval (the latest value
 * always shown): the chat's streamed answer changes with every token — up to ~100 a second from a
 * fast ring — and a render per token takes the cores the ring's stages compute on when they share
 * a device with the page. A change that matters at once (`urgent`) renders at once.
 */
import { useEffect, useState } from 'react';
import type { StoreApi } from 'zustand/vanilla';
import { createCoalescer } from '../../../shared/app/coalesce';
import { systemAppClock } from '../../../shared/app/network-port';

/** `select(store state)`, updated at most every `everyMs` (and at once when `urgent(shown, next)`). */
export function useCoalesced<S, T>(
  store: StoreApi<S>,
  select: (s: S) => T,
  everyMs: number,
  urgent?: (shown: T | undefined, next: T) => boolean,
): T {
  const [value, setValue] = useState(() => select(store.getState()));
  useEffect(() => {
    let live = true;
    const c = createCoalescer<T>({
      everyMs,
      clock: systemAppClock,
      deliver: (v) => {
        if (live) setValue(() => v);
      },
      ...(urgent ? { urgent } : {}),
    });
    // A change between the first render and this subscription.
    c.push(select(store.getState()));
    const off = store.subscribe((s, prev) => {
      const v = select(s);
      if (!Object.is(v, select(prev))) c.push(v);
    });
    return () => {
      live = false;
      off();
      c.flush(); // cancels the timer; the value goes nowhere
    };
    // `select` and `urgent` are module-level functions at the call sites: no dependency.
  }, [store, everyMs]);
  return value;
}
