import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

/** Placeholder shell; the Contribute / Chat / Network pages arrive with the web-app issue. */
function App() {
  return (
    <main
      style={{ fontFamily: 'system-ui, sans-serif', maxWidth: 720, margin: '3rem auto', lineHeight: 1.5 }}
    >
      <h1>Ringwork</h1>
      <p>
        A browser-native volunteer compute network: each tab runs a few layers of a language model, and a
        hidden-state vector hops from tab to tab for every token.
      </p>
      <p>
        The engine is in place; the Contribute, Chat and Network pages are next. Engine harness:{' '}
        <a href="/harness.html">/harness.html</a>.
      </p>
    </main>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
