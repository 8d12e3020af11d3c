/** Loads a self-contained HTML page (e.g. report.html) in headless chromium and reports what a reader would see go wrong. */
import { basename, dirname } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium } from './chromium.js';
import { startStaticServer } from './static-server.js';

/** What `checkPageRenders` saw. */
export interface PageRenderCheck {
  /** Console errors and uncaught page errors, in order. */
  consoleErrors: string[];
  screenshotPng: Buffer;
  /** Number of <svg> elements in the document. */
  svgCount: number;
  title: string;
}

/** Serves `htmlPath`'s folder, loads the page, waits for load and network idle, and screenshots the full page. */
export async function checkPageRenders(htmlPath: string, options: { browser?: Browser } = {}): Promise<PageRenderCheck> {
  const server = await startStaticServer({ directories: { '/': dirname(htmlPath) } });
  const ownBrowser = options.browser === undefined;
  const browser = options.browser ?? (await launchChromium());
  try {
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
    try {
      await page.goto(server.url(`/${encodeURIComponent(basename(htmlPath))}`), { waitUntil: 'load' });
      await page.waitForLoadState('networkidle');
      const svgCount = await page.locator('svg').count();
      return { consoleErrors, screenshotPng: await page.screenshot({ fullPage: true }), svgCount, title: await page.title() };
    } finally {
      await page.close();
    }
  } finally {
    await server.close();
    if (ownBrowser) await browser.close();
  }
}
