import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { requireOrSkip } from './services.ts';

/** Debian's Chromium (the `chromium` package); playwright-core downloads no browser of its own. */
export const CHROMIUM = process.env.GTX_CHROMIUM ?? '/usr/bin/chromium';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * True means "skip" (and prints why): no Chromium at CHROMIUM. With GTX_REQUIRE_SERVICES=1 a
 * missing Chromium fails the file instead (services.ts, requireOrSkip).
 */
export function skipWithoutChromium(what: string): boolean {
  return requireOrSkip(what, executable(CHROMIUM), `no Chromium at ${CHROMIUM} (Debian package "chromium")`);
}

/**
 * Headless Chromium with a fresh profile. The flags are not optional: without them Chromium
 * phones home (component updates, sync, safe browsing …) and floods a closed network.
 * Playwright refuses `--user-data-dir` in `launch()`'s args and takes the directory as
 * launchPersistentContext's first argument instead, which passes it as that flag. Each page
 * (tab) of the context has its own sessionStorage, so one page per signed-in role.
 * `close()` ends the browser and removes the profile.
 */
export async function launchBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'gtx-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
