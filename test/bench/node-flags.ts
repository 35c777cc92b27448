import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/** The node flags on bin/gtx.js's first line (`#!/usr/bin/env -S node --flag …`). */
export function settlementNodeFlags(repo: string): string[] {
  const shebang = readFileSync(resolve(repo, 'bin/gtx.js'), 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node((?: --[\w-]+=\S+)*)$/.exec(shebang);
  if (!m) throw new Error(`bin/gtx.js: unexpected first line ${JSON.stringify(shebang)}`);
  return m[1]!.trim().split(' ').filter(Boolean);
}

