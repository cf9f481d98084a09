/**
 * Every page the server serves loads without a console error or a failed request (the favicon
 * included: it used to be the one 404 on every page).
 */
import { test, expect } from './server-fixture';

for (const path of ['/', '/harness.html', '/profiler.html']) {
  test(`${path} loads with no console error and no failed request`, async ({ page, server }) => {
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`failed: ${r.url()}`));
    page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()}: ${r.url()}`));
    await page.goto(`${server.url}${path}`, { waitUntil: 'networkidle' });
    const icon = await page.evaluate(() => document.querySelector('link[rel="icon"]')?.getAttribute('href'));
    expect(icon).toBe('/favicon.svg');
    const res = await page.request.get(`${server.url}${icon}`);
    expect(res.status()).toBe(200);
    expect(res.headers()['content-type']).toContain('image/svg+xml');
    expect(problems).toEqual([]);
  });
}
