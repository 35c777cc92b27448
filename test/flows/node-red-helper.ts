import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { NodeInstance, NodeMessage, NodeStatus } from '../../flows/nodes/red.ts';

/**
 * node-red-node-test-helper (a real Node-RED 4.1 runtime's node and flow engine, in process),
 * started once per test file; flows are unloaded after each test so nodes close their
 * connections. The helper is CommonJS without types: this module is the one place that says
 * what of it the tests use.
 */
export interface FlowHelper {
  init(runtimePath: string, settings?: Record<string, unknown>): void;
  load(nodes: Array<(red: never) => unknown>, flow: Array<Record<string, unknown>>, credentials?: Record<string, Record<string, string>>): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): TestNode;
  startServer(done: (err?: Error) => void): void;
  stopServer(done: (err?: Error) => void): void;
  /** The runtime's log, as a sinon spy: each call's first argument is the log record. */
  log(): { args: Array<[{ level: number; id?: string; msg?: unknown }]> };
  request(): { get(path: string): PromiseLike<{ status: number; body: unknown }> };
}

export interface TestNode extends NodeInstance {
  receive(msg: NodeMessage): void;
  on(event: string, listener: (...args: never[]) => void): void;
  once(event: string, listener: (...args: never[]) => void): void;
}

export const helper = createRequire(import.meta.url)('node-red-node-test-helper') as FlowHelper;

export function useNodeRed(): Array<() => Promise<void> | void> {
  /** What a test started besides its flow: undone after the flow is unloaded, newest first. */
  const cleanups: Array<() => Promise<void> | void> = [];
  beforeAll(async () => {
    helper.init(createRequire(import.meta.url).resolve('node-red'));
    await new Promise<void>((resolve, reject) => helper.startServer((e) => (e ? reject(e) : resolve())));
  });
  afterEach(async () => {
    await helper.unload();
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => helper.stopServer(() => resolve()));
  });
  return cleanups;
}

/** Messages a node sends (through a helper node wired to it), and its statuses and errors. */
export function watch(id: string): { messages: NodeMessage[]; statuses: NodeStatus[]; errors: string[]; warnings: string[] } {
  const n = helper.getNode(id);
  const w = { messages: [] as NodeMessage[], statuses: [] as NodeStatus[], errors: [] as string[], warnings: [] as string[] };
  n.on('input', ((msg: NodeMessage) => w.messages.push(msg)) as (...a: never[]) => void);
  n.on('call:status', ((call: { args: [NodeStatus] }) => w.statuses.push(call.args[0])) as (...a: never[]) => void);
  n.on('call:error', ((call: { args: [unknown] }) => w.errors.push(String(call.args[0]))) as (...a: never[]) => void);
  n.on('call:warn', ((call: { args: [unknown] }) => w.warnings.push(String(call.args[0]))) as (...a: never[]) => void);
  return w;
}

/** Errors the runtime logged for node `id` (also those raised while the flow started, before watch()). */
export function loggedErrors(id: string): string[] {
  return helper
    .log()
    .args.map((a) => a[0])
    .filter((r) => r.id === id && r.level === 20)
    .map((r) => String(r.msg));
}
