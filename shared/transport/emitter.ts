/** A minimal typed listener set (no DOM EventTarget in shared/). */
export interface Listeners<T> {
  add(h: (v: T) => void): () => void;
  emit(v: T): void;
  readonly size: number;
}

export function createListeners<T>(): Listeners<T> {
  const set = new Set<(v: T) => void>();
  return {
    add(h) {
      set.add(h);
      return () => set.delete(h);
    },
    emit(v) {
      for (const h of [...set]) h(v);
    },
    get size() {
      return set.size;
    },
  };
}
