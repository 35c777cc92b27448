import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/tmp.ts';

const GTX = join(import.meta.dirname, '../../bin/gtx.js');

describe('gtx demo (what npm start runs)', () => {
  const dir = tempDir('gtx-demo-');
  afterAll(() => dir.remove());
  /** `npm start -- …` runs package.json's start script (`./bin/gtx.js demo`) as a user would. */
  const demo = (seconds: number, fresh: boolean, via: 'npm start' | 'node' = 'node') => {
    const args = ['--data', dir.path, '--duration', String(seconds), '--mqtt-port', '0', '--http-port', '0', ...(fresh ? ['--fresh'] : [])];
    const [cmd, argv] = via === 'npm start' ? ['npm', ['start', '--silent', '--', ...args]] : [process.execPath, [GTX, 'demo', ...args]];
    return spawnSync(cmd, argv, { encoding: 'utf8', cwd: join(import.meta.dirname, '../..'), env: { ...process.env, GTX_LOG_LEVEL: 'error' }, timeout: 60_000 });
  };

  it('shows verified readings within 10 seconds and stops cleanly (npm start)', () => {
    const r = demo(10, true, 'npm start');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/home 4: sdm630 prosumer/);
    const verified = [...r.stdout.matchAll(/readings verified (\d+)/g)].map((m) => Number(m[1]));
    expect(Math.max(...verified)).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/stopped: ledger holds [1-9]\d* readings .*; 0 rejections recorded/);
  }, 60_000);

  it('continues after a restart on the same data without a single rejection', () => {
    const r = demo(6, false);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/stopped: .*; 0 rejections recorded/);
  }, 60_000);
});
