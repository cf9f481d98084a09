import { useEffect, useState } from 'react';

/** The one breakpoint of the app (styles.css uses the same): one column below it. */
export const NARROW_QUERY = '(max-width: 640px)';

/** True while the viewport is narrower than the app's breakpoint (phones); follows resizes. */
export function useNarrow(): boolean {
  const [narrow, setNarrow] = useState(() => matchMedia(NARROW_QUERY).matches);
  useEffect(() => {
    const mq = matchMedia(NARROW_QUERY);
    const on = () => setNarrow(mq.matches);
    mq.addEventListener('change', on);
    on();
    return () => mq.removeEventListener('change', on);
  }, []);
  return narrow;
}
