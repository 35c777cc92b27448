/**
 * CPU profile of the settlement process during one phase, taken in-process with the V8
 * inspector (the same data `node --cpu-prof` writes, limited to the phase), and a summary of
 * where the time went: self time per function, per package/file, and inclusive time of the
 * project's own functions.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export class PhaseProfiler {
  private readonly session = new Session();

  async start(samplingIntervalUs = 250): Promise<void> {
    this.session.connect();
    await this.session.post('Profiler.enable');
    await this.session.post('Profiler.setSamplingInterval', { interval: samplingIntervalUs });
    await this.session.post('Profiler.start');
  }

  async stop(path: string): Promise<CpuProfile> {
    const { profile } = (await this.session.post('Profiler.stop')) as unknown as { profile: CpuProfile };
    await this.session.post('Profiler.disable');
    this.session.disconnect();
    writeFileSync(path, JSON.stringify(profile));
    return profile;
  }
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Where a function lives, short: `settlement/ingest/verify.ts`, `aedes`, `node:internal/crypto/sig`. */
export function place(url: string): string {
  if (!url) return '';
  let p = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = p.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = p.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (p.startsWith(repoRoot)) p = p.slice(repoRoot.length);
  return p;
}

export interface ProfileRow {
  what: string;
  where: string;
  ms: number;
  /** Share of the non-idle sampled time. */
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  busyMs: number;
  selfByFunction: ProfileRow[];
  selfByPlace: ProfileRow[];
  /** Project functions (protocol/, settlement/) by time with them on the stack. */
  inclusiveProject: ProfileRow[];
}

export function summariseProfile(p: CpuProfile, top = 12): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));

  // tsx's transform leaves project functions on line 1; a line is only shown when it says something.
  const at = (f: CallFrame) => (f.url && f.lineNumber > 0 ? `${place(f.url)}:${f.lineNumber + 1}` : place(f.url));
  const fnKey = (f: CallFrame) => `${f.functionName || '(anonymous)'}\t${at(f)}`;
  let totalUs = 0;
  let idleUs = 0;
  let profilerUs = 0;
  const onInspectorStack = (id: number): boolean => {
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) if (byId.get(n)!.callFrame.url === 'node:inspector') return true;
    return false;
  };
  const selfFn = new Map<string, number>();
  const selfPlace = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    totalUs += us;
    if (f.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    // The profiler's own start/stop round trips are not the settlement's work.
    if (onInspectorStack(id)) {
      profilerUs += us;
      continue;
    }
    // A native function (no script: better-sqlite3's run, a socket's writev) is named with
    // the nearest script function that called it, which says which statement or socket.
    let key = fnKey(f);
    if (!f.url && !f.functionName.startsWith('(')) {
      for (let n = parent.get(id); n !== undefined; n = parent.get(n)) {
        const c = byId.get(n)!.callFrame;
        if (c.url) {
          key = `${f.functionName} ← ${c.functionName || '(anonymous)'}\t${at(c)}`;
          break;
        }
      }
    }
    selfFn.set(key, (selfFn.get(key) ?? 0) + us);
    const where = place(f.url) || f.functionName;
    selfPlace.set(where, (selfPlace.get(where) ?? 0) + us);
  }

  // Inclusive: every project function on a sample's stack gets the sample once.
  const inclusive = new Map<string, number>();
  const isProject = (f: CallFrame) => /^(protocol|settlement)\//.test(place(f.url));
  for (const [id, us] of selfUs) {
    if (onInspectorStack(id)) continue;
    const seen = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const f = byId.get(n)!.callFrame;
      if (!isProject(f)) continue;
      const k = fnKey(f);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }

  const busyUs = totalUs - idleUs - profilerUs;
  const rows = (m: Map<string, number>): ProfileRow[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => {
        const [what, where] = k.includes('\t') ? k.split('\t') : [k, ''];
        return { what: what!, where: where ?? '', ms: us / 1000, share: busyUs ? us / busyUs : 0 };
      });
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    busyMs: busyUs / 1000,
    selfByFunction: rows(selfFn),
    selfByPlace: rows(selfPlace),
    inclusiveProject: rows(inclusive),
  };
}
