import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';

/**
 * Headless Chromium for browser tests: Debian's `chromium` package (`.ci/run` installs it), driven by
 * playwright-core, or the browser `CHROMIUM_PATH` names. Without one the tests are skipped, loudly,
 * and fail in CI (`CI=true`), as the Bicep tests do without a compiler.
 */
export const chromiumPath = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (path): path is string => !!path && existsSync(path),
);

export const browserRequired = process.env.CI === 'true';

if (!chromiumPath && !browserRequired)
  console.warn(
    '\n!!! No Chromium (CHROMIUM_PATH, /usr/bin/chromium): the browser tests are SKIPPED. `apt-get install chromium` to run them.\n',
  );

export async function launchChromium(): Promise<Browser> {
  if (!chromiumPath) throw new Error("No Chromium: set CHROMIUM_PATH or install Debian's chromium package");
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: chromiumPath,
    // As root in a container Chromium needs --no-sandbox; on a machine without internet, the background
    // networking flags keep it from trying Google's hosts at every start.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
