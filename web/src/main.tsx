import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { ChatPage } from './app/pages/chat-page';
import { ContributePage } from './app/pages/contribute-page';
import { NetworkPage } from './app/pages/network-page';
import { useStore } from 'zustand';
import { useNetworkView, type NetworkSnapshot } from './app/store';
import { contributor } from './app/tab';
import { PHASE_TEXT } from './app/format';
import { declaredFromUrl } from './app/declared';
import './app/styles.css';

type Page = 'chat' | 'contribute' | 'network';
const PAGES: { id: Page; label: string }[] = [
  { id: 'chat', label: 'Chat' },
  { id: 'contribute', label: 'Contribute' },
  { id: 'network', label: 'Network' },
];

function currentPage(): Page {
  const h = location.hash.replace(/^#\/?/, '').split('?')[0];
  return PAGES.find((p) => p.id === h)?.id ?? 'chat';
}

/** Polls the coordinator's snapshot for the Network page and the chat's ring status. */
function useNetworkPolling() {
  useEffect(() => {
    let stop = false;
    const tick = async () => {
      try {
        const snapshot = (await (await fetch('/api/network')).json()) as NetworkSnapshot;
        if (!stop) useNetworkView.setState({ snapshot, updatedAt: Date.now(), error: undefined });
      } catch (e) {
        if (!stop) useNetworkView.setState({ error: String(e) });
      }
    };
    void tick();
    const t = setInterval(() => void tick(), 1500);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, []);
}

function App() {
  const [page, setPage] = useState<Page>(currentPage());
  const phase = useStore(contributor.store, (s) => s.phase);
  useNetworkPolling();
  useEffect(() => {
    const on = () => setPage(currentPage());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return (
    <>
      <header className="top">
        <h1>
          Ring<span>work</span>
        </h1>
        <nav className="tabs">
          {PAGES.map((p) => (
            <a
              key={p.id}
              href={`#/${p.id}`}
              className={p.id === page ? 'active' : ''}
              data-testid={`tab-${p.id}`}
            >
              {p.label}
            </a>
          ))}
        </nav>
        <span className="status-pill" role="status" data-testid="header-status">
          This tab: {PHASE_TEXT[phase] ?? phase}
        </span>
      </header>
      <main>
        {page === 'chat' && <ChatPage />}
        {page === 'contribute' && <ContributePage />}
        {page === 'network' && <NetworkPage />}
      </main>
    </>
  );
}

/** `join=1` in the URL joins at once (with a declared capability when the URL gives one). */
function autoJoinFromUrl() {
  const d = declaredFromUrl();
  if (!d.join) return;
  void contributor.start(d.capability ? { capability: d.capability } : {}).catch(() => undefined);
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
autoJoinFromUrl();
