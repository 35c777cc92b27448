/**
 * `npm run bench:nodered` (or `npm run bench -- --suite footprint`): the gateway's footprint
 * beside Node-RED doing the same polling job, and the outbox replay rate after a simulated
 * 24 h outage. docs/benchmarks.md, "Footprint against Node-RED".
 *
 *   node --import tsx test/bench/footprint-nodered.ts [--warmup-s 300] [--measure-s 120] [--meters 32]
 *        [--replay-meters 16] [--replay-interval-s 10] [--replay-hours 24] [--replay-runs 3] [--skip-replay] [--skip-footprint]
 *        [--out docs/benchmarks.md] [--quick]
 *
 * This process runs the settlement (embedded broker, auth on), one simulated Modbus TCP bus
 * (an RS-485/TCP bridge with SDM630s on unit ids 1..N) and a second, small aedes broker for
 * Node-RED (its own login; the settlement's broker only admits gateways, whose topics carry
 * signed envelopes). Only the two child processes are measured, the same way: VmRSS from
 * /proc/PID/status every second, CPU (utime + stime from /proc/PID/stat) over the window.
 * --quick: 20 s warm-up + 20 s window and one replay of a 1 h outage, written only with --out.
 */
import { codeRevision } from './report.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { getDefinition } from '../../devices/catalog.ts';
import { planReads, READING_FACTOR, READING_FIELD } from '../../devices/decoder.ts';
import type { ReadBlock } from '../../devices/plan.ts';
import { createProfile, PROFILE_NAMES } from '../../devices/profiles.ts';
import { findFreePort, MeterSimulator } from '../../devices/simulator.ts';
import { loadGatewayConfig } from '../../gateway/config.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { Outbox, type Sample } from '../../gateway/outbox.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { enrollGatewayConfig, settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GTX = join(ROOT, 'bin/gtx.js');
export const NODE_RED = join(ROOT, 'node_modules/node-red/red.js');
const SDM630 = getDefinition('sdm630');
const USAGE =
  'usage: node --import tsx test/bench/footprint-nodered.ts [--warmup-s N] [--measure-s N] [--meters N] [--replay-meters N] [--replay-interval-s N]\n' +
  '         [--replay-hours N] [--replay-runs N] [--skip-replay] [--skip-footprint] [--out FILE] [--quick]';
const BEGIN = '<!-- bench:nodered:begin -->';
const END = '<!-- bench:nodered:end -->';

const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const int = (n: number) => Math.round(n).toLocaleString('en-US');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

// ---------------------------------------------------------------------------------------------
// /proc sampling (Linux): the same for both processes.

interface Mem {
  rss: number;
  anon: number;
  hwm: number;
}

function procMem(pid: number): Mem {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), hwm: kb('VmHWM') };
}

/** utime + stime in seconds (USER_HZ is 100 on Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Child processes of `pid` (a service that forks would hide memory from VmRSS). */
function childrenOf(pid: number): number {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).length;
  } catch {
    return 0;
  }
}

interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  exited: Promise<number | null>;
  /** The last lines it wrote, for a failure message. */
  tail(): string;
}

function startChild(name: string, exe: string, args: string[], opts: { env?: NodeJS.ProcessEnv; logFile?: string } = {}): Child {
  // Node-RED logs every start line on stdout: into a file, so a full pipe never stalls it.
  const fd = opts.logFile ? openSync(opts.logFile, 'a') : undefined;
  const proc = spawn(exe, args, { stdio: ['ignore', fd ?? 'ignore', fd ?? 'pipe'], env: { ...process.env, ...opts.env } });
  if (fd !== undefined) closeSync(fd);
  let tail = '';
  proc.stderr?.on('data', (d: Buffer) => (tail = (tail + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
  return {
    name,
    proc,
    pid: proc.pid!,
    exited,
    tail: () => (opts.logFile && existsSync(opts.logFile) ? readFileSync(opts.logFile, 'utf8').slice(-4000) : tail),
  };
}

async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  c.proc.kill('SIGTERM');
  const done = await Promise.race([c.exited.then(() => true), sleep(15_000).then(() => false)]);
  if (!done) {
    c.proc.kill('SIGKILL');
    await c.exited;
  }
}

// ---------------------------------------------------------------------------------------------
// The shared world: simulated meters on one bus, and Node-RED's broker.

/** SDM630s on unit ids 1..n of one Modbus TCP bus; varied profiles so the values differ. */
export async function startBus(n: number, initial?: Array<{ importKWh: number; exportKWh: number }>, port = 0): Promise<{ bus: BusSimulator; port: number }> {
  const units = new Map<number, MeterSimulator>();
  for (let u = 1; u <= n; u++) {
    units.set(
      u,
      new MeterSimulator({
        definition: SDM630,
        profile: PROFILE_NAMES[(u - 1) % PROFILE_NAMES.length]!,
        seed: u,
        initialImportKWh: initial?.[u - 1]?.importKWh,
        initialExportKWh: initial?.[u - 1]?.exportKWh,
      }),
    );
  }
  const bus = new BusSimulator(units);
  return { bus, port: await bus.listenTcp('127.0.0.1', port) };
}

interface NodeRedBroker {
  url: string;
  port: number;
  /** Messages Node-RED published, and those whose JSON decodes to plausible SDM630 values. */
  received: number;
  plausible: number;
  close(): Promise<void>;
}

/**
 * A second aedes in this process, for Node-RED only, with a username and password check so
 * Node-RED logs in as it would to a real broker. (The settlement's broker admits the settlement
 * and enrolled gateways, and a gateway may only publish signed envelopes on its own topics.)
 * Messages are counted as the broker receives them; no subscriber is needed.
 */
export async function startNodeRedBroker(user: string, password: string): Promise<NodeRedBroker> {
  const aedes = await Aedes.createBroker({
    authenticate: (_client, username, pw, done) => done(null, username === user && pw?.toString() === password),
  });
  const state = { received: 0, plausible: 0 };
  aedes.on('publish', (packet, client) => {
    if (!client || !packet.topic.startsWith('nodered/')) return;
    state.received++;
    try {
      const r = JSON.parse(packet.payload.toString()) as Record<string, unknown>;
      const v = r.voltageMilliV;
      // The simulated mains is 230 V ± 3 V: a right voltage means the registers were decoded at the right offsets.
      if (typeof v === 'number' && v > 200_000 && v < 260_000 && Number.isFinite(r.importWh) && Number.isFinite(r.powerW)) state.plausible++;
    } catch {
      // counted as received, not as plausible
    }
  });
  const server: Server = createServer({ noDelay: true }, aedes.handle);
  const port = await findFreePort('127.0.0.1');
  await new Promise<void>((res, rej) => server.once('error', rej).listen(port, '127.0.0.1', () => res()));
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    get received() {
      return state.received;
    },
    get plausible() {
      return state.plausible;
    },
    async close() {
      await new Promise<void>((res) => aedes.close(() => res()));
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}

/** A gateway.toml for `meters` SDM630s on one TCP bus; meter ids PREFIX-mNN. */
export function gatewayToml(id: string, port: number, meters: number, pollS: number, prefix: string): string {
  const lines = [`[gateway]\nid = "${id}"\ndata_dir = "gw-data"\npoll_interval_s = ${pollS}\n`, `[[buses]]\nname = "bridge"\ntcp = "127.0.0.1:${port}"\n`];
  for (let u = 1; u <= meters; u++) {
    lines.push(
      `[[meters]]\nid = "${prefix}-m${String(u).padStart(2, '0')}"\nmodel = "sdm630"\nbus = "bridge"\nunit_id = ${u}\nrole = "bidirectional"\nenergy_source = "Solar"\n`,
    );
  }
  return lines.join('\n');
}

/**
 * The block our SDM630 definition reads and a function-node body that decodes it into the same
 * fields the gateway's decoder fills (READING_FIELD, READING_FACTOR), so Node-RED reads the same
 * registers as the gateway for as long as the definition says so.
 */
function nodeRedDecoder(): { block: ReadBlock; decode: string } {
  const blocks = planReads(SDM630);
  if (blocks.length !== 1) throw new Error(`the SDM630 definition reads ${blocks.length} blocks; the Node-RED flow has one modbus-read per meter`);
  const block = blocks[0]!;
  const lines = [
    `// ${SDM630.id}: registers ${block.address}..${block.address + block.count - 1}, as devices/catalog reads them`,
    'const b = msg.responseBuffer.buffer;',
    'msg.payload = { meter: msg.topic, ts: new Date().toISOString() };',
  ];
  for (const r of SDM630.registers) {
    if (r.dataType !== 'float32' || r.wordOrder !== 'big' || r.address === undefined) throw new Error(`${r.quantity}: only big-endian float32 at an address is decoded here`);
    lines.push(`msg.payload.${READING_FIELD[r.quantity]} = Math.round(b.readFloatBE(${(r.address - block.address) * 2}) * ${r.scale * READING_FACTOR[r.unit]});`);
  }
  lines.push("msg.topic = 'nodered/meters/' + msg.topic;", 'return msg;');
  return { block, decode: lines.join('\n') };
}

/**
 * Node-RED's userDir: the settings.js that ships with Node-RED (what a Raspberry Pi install
 * starts from), with the editor on loopback, no telemetry prompt, and plain-text credentials so
 * the MQTT login can be written here; and a flow a Node-RED user would draw for this job:
 * one modbus-client to the bridge, per meter a modbus-read of the one block our SDM630 definition
 * reads every second, one function node that decodes the floats into a reading, one mqtt out (QoS 1).
 */
export function nodeRedUserDir(dir: string, o: { modbusPort: number; mqttPort: number; uiPort: number; meters: number; user: string; password: string }): string {
  mkdirSync(dir, { recursive: true });
  const shipped = join(dir, 'settings.shipped.js');
  copyFileSync(join(ROOT, 'node_modules/node-red/settings.js'), shipped);
  const settings = join(dir, 'settings.js');
  writeFileSync(
    settings,
    `// The settings Node-RED ships with, as a Pi install copies them to ~/.node-red, and these overrides.\n` +
      `const shipped = require(${JSON.stringify(shipped)});\n` +
      `module.exports = { ...shipped, uiHost: '127.0.0.1', uiPort: ${o.uiPort}, credentialSecret: false, telemetry: { enabled: false, updateNotification: false } };\n`,
  );
  const { block, decode } = nodeRedDecoder();
  const flows: Array<Record<string, unknown>> = [
    { id: 'tab', type: 'tab', label: 'SDM630 to MQTT' },
    {
      // The editor's defaults for a TCP client, with the bridge's address.
      id: 'mbclient',
      type: 'modbus-client',
      name: 'bridge',
      clienttype: 'tcp',
      bufferCommands: true,
      stateLogEnabled: false,
      queueLogEnabled: false,
      failureLogEnabled: true,
      tcpHost: '127.0.0.1',
      tcpPort: String(o.modbusPort),
      tcpType: 'DEFAULT',
      serialPort: '/dev/ttyUSB',
      serialType: 'RTU-BUFFERD',
      serialBaudrate: '9600',
      serialDatabits: '8',
      serialStopbits: '1',
      serialParity: 'none',
      serialConnectionDelay: '100',
      serialAsciiResponseStartDelimiter: '0x3A',
      unit_id: '1',
      commandDelay: '1',
      clientTimeout: '1000',
      reconnectOnTimeout: true,
      reconnectTimeout: '2000',
      parallelUnitIdsAllowed: true,
      showErrors: false,
      showWarnings: true,
      showLogs: true,
    },
    {
      id: 'broker',
      type: 'mqtt-broker',
      name: 'settlement',
      broker: '127.0.0.1',
      port: String(o.mqttPort),
      clientid: '',
      autoConnect: true,
      usetls: false,
      protocolVersion: '4',
      keepalive: '60',
      cleansession: true,
      autoUnsubscribe: true,
      birthTopic: '',
      closeTopic: '',
      willTopic: '',
    },
    { id: 'decode', type: 'function', z: 'tab', name: 'SDM630 → reading', func: decode, outputs: 1, timeout: 0, noerr: 0, initialize: '', finalize: '', libs: [], x: 400, y: 100, wires: [['mqttout']] },
    { id: 'mqttout', type: 'mqtt out', z: 'tab', name: '', topic: '', qos: '1', retain: 'false', respTopic: '', contentType: '', userProps: '', correl: '', expiry: '', broker: 'broker', x: 600, y: 100, wires: [] },
  ];
  for (let u = 1; u <= o.meters; u++) {
    flows.push({
      id: `read${u}`,
      type: 'modbus-read',
      z: 'tab',
      name: `sdm630 #${u}`,
      topic: `nr-m${String(u).padStart(2, '0')}`,
      showStatusActivities: false,
      logIOActivities: false,
      showErrors: false,
      showWarnings: true,
      unitid: String(u),
      dataType: block.functionCode === 4 ? 'InputRegister' : 'HoldingRegister',
      adr: String(block.address),
      quantity: String(block.count),
      rate: '1',
      rateUnit: 's',
      delayOnStart: false,
      enableDeformedMessages: false,
      startDelayTime: '',
      server: 'mbclient',
      useIOFile: false,
      ioFile: '',
      useIOForPayload: false,
      emptyMsgOnFail: false,
      x: 150,
      y: 40 * u,
      wires: [['decode'], []],
    });
  }
  writeFileSync(join(dir, 'flows.json'), JSON.stringify(flows, null, 2));
  writeFileSync(join(dir, 'flows_cred.json'), JSON.stringify({ broker: { user: o.user, password: o.password } }));
  return settings;
}

// ---------------------------------------------------------------------------------------------
// Part 1: side by side.

interface Side {
  title: string;
  command: string;
  /** One sample per second from the start. */
  samples: Mem[];
  cpuWindowS: number;
  windowS: number;
  hwm: number;
  /** Readings verified by settlement (gateway) or messages received (Node-RED) in the window. */
  work: number;
  workNote: string;
  children: number;
}

interface FootprintResult {
  warmupS: number;
  measureS: number;
  meters: number;
  gateways: Side[];
  nodeRed: Side;
  busRequests: number;
}

/** How a gateway is started: the `gtx` launcher as installed, or as the shipped systemd unit does. */
interface Launch {
  title: string;
  /** Node flags before bin/gtx.js; undefined = run bin/gtx.js itself (its first line names node and flags). */
  nodeFlags?: string[];
}

/**
 * The node flags config/gtx-gateway.service (README, "A gateway on a Raspberry Pi") starts the
 * gateway with, read from its ExecStart line so the bench follows the unit.
 */
function systemdUnitFlags(): string[] | undefined {
  const unit = join(ROOT, 'config/gtx-gateway.service');
  if (!existsSync(unit)) return undefined;
  const m = /^ExecStart=.*?\bnode((?:\s+--\S+)*)\s+\S*bin\/gtx\.js\s+gateway\s+run\b/m.exec(readFileSync(unit, 'utf8'));
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : undefined;
}

function launches(): Launch[] {
  const unit = systemdUnitFlags();
  return [
    { title: '`gtx gateway run`, as `bin/gtx.js` starts it' },
    ...(unit ? [{ title: '`gtx gateway run`, as config/gtx-gateway.service starts it', nodeFlags: unit }] : []),
  ];
}

async function sideBySide(warmupS: number, measureS: number, meters: number): Promise<FootprintResult> {
  const dir = tempDir('gtx-nodered-');
  const cleanups: Array<() => Promise<void>> = [];
  try {
    const { bus, port } = await startBus(meters);
    cleanups.push(() => bus.close());
    const nrUser = 'nodered';
    const nrPassword = `pw-${process.pid}-${Date.now()}`;
    const nrBroker = await startNodeRedBroker(nrUser, nrPassword);
    cleanups.push(() => nrBroker.close());
    const uiPort = await findFreePort('127.0.0.1');
    const settings = nodeRedUserDir(join(dir.path, 'node-red'), { modbusPort: port, mqttPort: nrBroker.port, uiPort, meters, user: nrUser, password: nrPassword });

    // One settlement per gateway, so that each one's verified readings are its own.
    const gws: Array<{ launch: Launch; settlement: Settlement; child: Child; command: string }> = [];
    const children: Child[] = [];
    cleanups.push(async () => {
      for (const c of children) await stopChild(c);
    });
    for (const [i, launch] of launches().entries()) {
      const settlement = await startSettlement(settlementConfig(join(dir.path, `s${i}`), 0, true), { log: testLog('settlement') });
      cleanups.push(() => settlement.stop());
      const config = join(dir.path, `gw${i}`, 'gateway.toml');
      mkdirSync(dirname(config), { recursive: true });
      writeFileSync(config, gatewayToml(`gw-nodered-bench-${i}`, port, meters, 1, `g${i}`));
      await enrollGatewayConfig(settlement, loadGatewayConfig(config));
      const cli = ['gateway', 'run', '--config', config];
      const [exe, args] = launch.nodeFlags ? [process.execPath, [...launch.nodeFlags, GTX, ...cli]] : [GTX, cli];
      const command = `${launch.nodeFlags ? `node ${launch.nodeFlags.join(' ')} ` : ''}bin/gtx.js gateway run --config $TMP/gateway.toml`;
      gws.push({ launch, settlement, command, child: startChild(`gateway ${i + 1}`, exe, args, { env: { GTX_LOG_LEVEL: 'warn' } }) });
      children.push(gws.at(-1)!.child);
    }
    // Started together: all warm up under the same conditions on the same bus; Node-RED as `node-red` starts it.
    const nr = startChild('node-red', process.execPath, [NODE_RED, '--userDir', join(dir.path, 'node-red'), '--settings', settings], { logFile: join(dir.path, 'node-red.log') });
    children.push(nr);

    const samples = new Map<Child, Mem[]>(children.map((c) => [c, []]));
    const total = warmupS + measureS;
    // Counters at the window's two ends: the window's figures are their differences.
    const snapshot = () => ({
      cpu: children.map((c) => cpuSeconds(c.pid)),
      wallMs: performance.now(),
      verified: gws.map((g) => g.settlement.stats.readingsVerified),
      received: nrBroker.received,
      plausible: nrBroker.plausible,
      served: [...bus.served.values()].reduce((a, b) => a + b, 0),
    });
    let from: ReturnType<typeof snapshot> | undefined;
    let to: ReturnType<typeof snapshot> | undefined;
    const t0 = Date.now();
    for (let s = 1; s <= total; s++) {
      await sleep(t0 + s * 1000 - Date.now());
      for (const c of children) {
        if (c.proc.exitCode !== null || c.proc.signalCode !== null) throw new Error(`${c.name} exited (${c.proc.exitCode ?? c.proc.signalCode}) after ${s} s:\n${c.tail()}`);
        samples.get(c)!.push(procMem(c.pid));
      }
      if (s === warmupS) {
        for (const g of gws) if (g.settlement.stats.readingsVerified === 0) throw new Error(`no readings from ${g.child.name} after the warm-up:\n${g.child.tail()}`);
        if (nrBroker.received === 0) throw new Error(`no messages from Node-RED after the warm-up:\n${nr.tail()}`);
        from = snapshot();
      }
      if (s === total) to = snapshot();
      if (s % 30 === 0 || s === total) {
        const rss = children.map((c) => `${c.name} ${MiB(samples.get(c)!.at(-1)!.rss)} MiB`).join(', ');
        process.stderr.write(`[nodered] ${s}/${total} s (${s <= warmupS ? 'warm-up' : 'measuring'}): ${rss}; Node-RED messages ${nrBroker.received}\n`);
      }
    }
    const windowS = (to!.wallMs - from!.wallMs) / 1000;
    const expected = Math.round(windowS * meters);
    const side = (c: Child, title: string, command: string, work: number, workNote: string): Side => {
      const i = children.indexOf(c);
      return { title, command, samples: samples.get(c)!, cpuWindowS: to!.cpu[i]! - from!.cpu[i]!, windowS, hwm: procMem(c.pid).hwm, work, workNote, children: childrenOf(c.pid) };
    };
    return {
      warmupS,
      measureS,
      meters,
      busRequests: to!.served - from!.served,
      gateways: gws.map((g, i) => {
        const rejected = Object.values(g.settlement.stats.rejected).reduce((a, b) => a + (b ?? 0), 0);
        return side(g.child, g.launch.title, g.command, to!.verified[i]! - from!.verified[i]!, `readings verified by settlement (${int(expected)} polled at 1/s; ${rejected} rejected)`);
      }),
      nodeRed: side(
        nr,
        'Node-RED 4 + node-red-contrib-modbus (no signing, no store and forward)',
        `node node_modules/node-red/red.js --userDir $TMP/node-red --settings $TMP/node-red/settings.js`,
        to!.received - from!.received,
        `MQTT messages received (${int(to!.plausible - from!.plausible)} with plausible values; ${int(expected)} polled at 1/s)`,
      ),
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    dir.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// Part 2: replay after an outage.

export interface ReplayResult {
  meters: number;
  intervalS: number;
  hours: number;
  readings: number;
  envelopes: number;
  /** [gateway] batch_max_readings: readings per envelope at most, as the gateway seals them. */
  batch: number;
  sealS: number;
  /** From spawning `gtx gateway run` to the last historical reading verified. */
  totalS: number;
  /** From the first to the last verified reading (start-up and connecting excluded). */
  drainS: number;
  verified: number;
  peakRss: number;
  cpuS: number;
  outboxAfter: number;
  deadLetters: number;
  rejected: number;
}

/**
 * A gateway cut off for `hours`: its meters' readings sealed straight into its outbox, one
 * envelope per poll round (one reading per meter, as the gateway batches them), signed with its
 * key, as demo-history.ts does for the demo. Then `gtx gateway run` against the running
 * settlement, still polling its (live) meters; timed until settlement has every sealed reading.
 */
export async function replay(meters: number, intervalS: number, hours: number, nodeArgs?: string[]): Promise<ReplayResult> {
  const dir = tempDir('gtx-replay-');
  const cleanups: Array<() => Promise<void>> = [];
  try {
    const settlement = await startSettlement(settlementConfig(dir.path, 0, true), { log: testLog('settlement') });
    cleanups.push(() => settlement.stop());
    const config = join(dir.path, 'gateway.toml');
    // The bus port is only known once the meters exist, and they start where the history ends.
    const busPort = await findFreePort('127.0.0.1');
    writeFileSync(config, gatewayToml('gw-replay-bench', busPort, meters, intervalS, 'rp'));
    const cfg = loadGatewayConfig(config);
    await enrollGatewayConfig(settlement, cfg);

    const stepMs = intervalS * 1000;
    const rounds = Math.round((hours * 3_600_000) / stepMs);
    const end = Math.floor(Date.now() / stepMs) * stepMs - stepMs;
    const start = end - (rounds - 1) * stepMs;
    const profiles = Array.from({ length: meters }, (_, i) => createProfile(PROFILE_NAMES[i % PROFILE_NAMES.length]!, { seed: i + 1 }));
    const counters = Array.from({ length: meters }, () => ({ importWh: 0, exportWh: 0 }));
    const key = loadOrCreateKey(cfg.keyFile).privateKey;
    const outbox = new Outbox(cfg.outboxFile);
    const sealStart = performance.now();
    let envelopes = 0;
    let pending: Sample[] = [];
    try {
      for (let r = 0; r < rounds; r++) {
        const t = start + r * stepMs;
        for (let m = 0; m < meters; m++) {
          const w = profiles[m]!(t);
          // Energy over the interval before this reading, at its midpoint's power: counters only grow.
          const mid = r === 0 ? 0 : profiles[m]!(t - stepMs / 2);
          const c = counters[m]!;
          if (mid > 0) c.importWh += (mid * stepMs) / 3_600_000;
          else c.exportWh -= (mid * stepMs) / 3_600_000;
          pending.push({
            meter: cfg.meters[m]!.id,
            tsMs: t,
            values: { importWh: Math.floor(c.importWh), exportWh: Math.floor(c.exportWh), powerW: Math.round(w), voltageMilliV: 230_000, currentMilliA: Math.round((Math.abs(w) / 690) * 1000), frequencyMilliHz: 50_000 },
          });
          if (pending.length === cfg.batchMaxReadings) {
            outbox.seal(cfg.id, key, pending);
            envelopes++;
            pending = [];
          }
        }
      }
      if (pending.length > 0) {
        outbox.seal(cfg.id, key, pending);
        envelopes++;
      }
    } finally {
      outbox.close();
    }
    const sealS = (performance.now() - sealStart) / 1000;
    const readings = rounds * meters;
    process.stderr.write(`[replay] sealed ${int(readings)} readings in ${int(envelopes)} envelopes in ${sealS.toFixed(1)} s\n`);

    // The live meters continue from the counters the history ends with, on the port in the config.
    const { bus } = await startBus(
      meters,
      counters.map((c) => ({ importKWh: Math.floor(c.importWh) / 1000, exportKWh: Math.floor(c.exportWh) / 1000 })),
      busPort,
    );
    cleanups.push(() => bus.close());

    const base = settlement.stats.readingsVerified;
    const t0 = performance.now();
    // As installed, unless other node flags are being measured (gateway-memory.ts).
    const cli = ['gateway', 'run', '--config', config];
    const gw = nodeArgs ? startChild('gateway', process.execPath, [...nodeArgs, GTX, ...cli], { env: { GTX_LOG_LEVEL: 'warn' } }) : startChild('gateway', GTX, cli, { env: { GTX_LOG_LEVEL: 'warn' } });
    cleanups.push(() => stopChild(gw));
    let first = NaN;
    let peak = 0;
    const deadline = t0 + 30 * 60_000;
    for (;;) {
      await sleep(200);
      if (gw.proc.exitCode !== null || gw.proc.signalCode !== null) throw new Error(`the gateway exited (${gw.proc.exitCode ?? gw.proc.signalCode}) during the replay:\n${gw.tail()}`);
      peak = Math.max(peak, procMem(gw.pid).rss);
      const done = settlement.stats.readingsVerified - base;
      if (done > 0 && Number.isNaN(first)) first = performance.now();
      if (done >= readings) break;
      if (performance.now() > deadline) throw new Error(`replay not done after 30 min: ${done} of ${readings} readings verified\n${gw.tail()}`);
    }
    const t1 = performance.now();
    const cpuS = cpuSeconds(gw.pid);
    const verified = settlement.stats.readingsVerified - base;
    peak = Math.max(peak, procMem(gw.pid).hwm);
    await stopChild(gw);
    const after = new Outbox(cfg.outboxFile);
    const outboxAfter = after.depth();
    const deadLetters = after.deadLetters();
    after.close();
    return {
      meters,
      intervalS,
      hours,
      readings,
      envelopes,
      batch: cfg.batchMaxReadings,
      sealS,
      totalS: (t1 - t0) / 1000,
      drainS: (t1 - first) / 1000,
      verified,
      peakRss: peak,
      cpuS,
      outboxAfter,
      deadLetters,
      rejected: Object.values(settlement.stats.rejected).reduce((a, b) => a + (b ?? 0), 0),
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    dir.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// Report.

interface Ctx {
  command: string;
  machine: string;
  revision: string;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const ratio = (a: number, b: number) => (a / b).toFixed(2);
const verdict = (r: number) => (r <= 0.5 ? 'PASS' : '**MISS**');

function windowStats(side: Side, warmupS: number) {
  const w = side.samples.slice(warmupS);
  return {
    rss: mean(w.map((m) => m.rss)),
    anon: mean(w.map((m) => m.anon)),
    peak: Math.max(...w.map((m) => m.rss)),
    cpuPct: (100 * side.cpuWindowS) / side.windowS,
  };
}

function renderFootprint(fp: FootprintResult): string {
  const marks = [30, 60, 120, 180, 240, fp.warmupS].filter((s, i, a) => s <= fp.warmupS && a.indexOf(s) === i);
  const n = windowStats(fp.nodeRed, fp.warmupS);
  const row = (s: Side) => {
    const st = windowStats(s, fp.warmupS);
    return `| ${s.title} | \`${s.command}\` | ${marks.map((m) => MiB(s.samples[m - 1]!.rss)).join(' | ')} | **${MiB(st.rss)}** | ${MiB(st.anon)} | ${MiB(st.peak)} | ${MiB(s.hwm)} | **${st.cpuPct.toFixed(2)} %** | ${int(s.work)} ${s.workNote} |`;
  };
  const ratios = (g: Side, i: number) => {
    const st = windowStats(g, fp.warmupS);
    const label = fp.gateways.length > 1 ? `gateway ${i + 1} / Node-RED` : 'gateway / Node-RED';
    return `| ${label} | | ${marks.map((m) => ratio(g.samples[m - 1]!.rss, fp.nodeRed.samples[m - 1]!.rss)).join(' | ')} | **${ratio(st.rss, n.rss)}** | ${ratio(st.anon, n.anon)} | ${ratio(st.peak, n.peak)} | ${ratio(g.hwm, fp.nodeRed.hwm)} | **${(st.cpuPct / n.cpuPct).toFixed(2)}** | |`;
  };
  const verdicts = fp.gateways.map((g, i) => {
    const st = windowStats(g, fp.warmupS);
    const [r, c] = [st.rss / n.rss, st.cpuPct / n.cpuPct];
    return `${fp.gateways.length > 1 ? `gateway ${i + 1}: ` : ''}RSS ${r.toFixed(2)} × — ${verdict(r)}; CPU ${c.toFixed(2)} × — ${verdict(c)}`;
  });
  const kids = [...fp.gateways, fp.nodeRed].reduce((a, s) => a + s.children, 0);
  return [
    `| process | command | ${marks.map((m) => `RSS at ${m} s`).join(' | ')} | mean RSS in window | mean RssAnon | peak RSS in window | VmHWM (whole run) | CPU (one core = 100 %) | work in window |`,
    `| --- | --- | ${marks.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: | ---: | --- |`,
    ...fp.gateways.map((g, i) => row({ ...g, title: fp.gateways.length > 1 ? `${i + 1}. ${g.title}` : g.title })),
    row(fp.nodeRed),
    ...fp.gateways.map(ratios),
    '',
    `RSS in MiB. Target: at most half of Node-RED's resident memory and CPU: ${verdicts.join('; ')}.`,
    `Requests the simulated bus answered in the window: ${int(fp.busRequests)} (all clients together).` +
      (kids > 0 ? ` Child processes at the end: ${kids}.` : ' No process had a child process, so each one process is the whole footprint.'),
  ].join('\n');
}

function renderReplay(runs: ReplayResult[]): string {
  return [
    `| run | outage | readings sealed (envelopes) | sealing into the outbox | start → last reading verified | first → last reading verified | replay rate | gateway CPU | gateway peak RSS | outbox after | dead letters / rejected |`,
    `| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...runs.map(
      (rp, i) =>
        `| ${i + 1} | ${rp.hours} h × ${rp.meters} meters every ${rp.intervalS} s | ${int(rp.readings)} (${int(rp.envelopes)} of ≤ ${rp.batch}) | ${rp.sealS.toFixed(1)} s | ${rp.totalS.toFixed(1)} s | ${rp.drainS.toFixed(1)} s | **${int(rp.readings / rp.totalS)} readings/s** (${int(rp.readings / rp.drainS)} from the first ack) | ${rp.cpuS.toFixed(1)} s (${((100 * rp.cpuS) / rp.totalS).toFixed(0)} % of one core) | ${MiB(rp.peakRss)} MiB | ${rp.outboxAfter} envelope(s) | ${rp.deadLetters} / ${rp.rejected} |`,
    ),
  ].join('\n');
}

function readingIt(fp: FootprintResult | undefined, runs: ReplayResult[]): string {
  const out: string[] = [];
  if (fp) {
    const n = windowStats(fp.nodeRed, fp.warmupS);
    const w = fp.warmupS;
    const each = fp.gateways.map((side, i) => {
      const g = windowStats(side, w);
      const who = fp.gateways.length > 1 ? `the gateway ${i === 0 ? 'as bin/gtx.js starts it' : 'as the systemd unit starts it'}` : 'the gateway';
      return (
        `${who} held ${MiB(g.rss)} MiB (${ratio(g.rss, n.rss)} ×, target ≤ 0.5: ${verdict(g.rss / n.rss).replace(/\*/g, '')}) and used ${g.cpuPct.toFixed(2)} % of one core ` +
        `(${(g.cpuPct / n.cpuPct).toFixed(2)} ×: ${verdict(g.cpuPct / n.cpuPct).replace(/\*/g, '')}); of its own allocations (RssAnon) ${MiB(g.anon)} MiB (${ratio(g.anon, n.anon)} ×)`
      );
    });
    out.push(
      `Over the ${fp.measureS}-s window after ${w} s of warm-up Node-RED held ${MiB(n.rss)} MiB and used ${n.cpuPct.toFixed(2)} % of one core; ${each.join('; ')}.`,
      `About ${MiB(n.rss - n.anon)} MiB of each process is file-backed (RSS − RssAnon: the node binary's and shared libraries' pages, the same floor under any Node program).`,
      `Neither line is flat: ${[fp.nodeRed, ...fp.gateways].map((side, i) => {
        // From 30 s on: the first seconds are the start-up, lower by nature.
        const from = Math.min(29, w - 1);
        const lowAt = side.samples.reduce((lo, m, j, a) => (j >= from && m.rss < a[lo]!.rss ? j : lo), from);
        return `${i === 0 ? 'Node-RED' : fp.gateways.length > 1 ? `gateway ${i}` : 'the gateway'} was at ${MiB(side.samples[Math.min(59, w - 1)]!.rss)} MiB at ${Math.min(60, w)} s, lowest after start-up at ${lowAt + 1} s (${MiB(side.samples[lowAt]!.rss)} MiB), ${MiB(windowStats(side, w).peak)} MiB at most in the window`;
      }).join('; ')} (the RSS columns above).`,
      'The comparison favours Node-RED: it signs nothing, keeps no durable outbox and waits for no ledger; each of its messages is one ' +
        "QoS 1 publish of an unsigned JSON reading, where the gateway seals readings into Ed25519-signed envelopes in SQLite (an fsync per envelope) and deletes them only on settlement's ack.",
    );
  }
  if (runs.length > 0) {
    const rp = [...runs].sort((a, b) => a.totalS - b.totalS)[Math.floor(runs.length / 2)]!;
    const rates = runs.map((r) => r.readings / r.totalS);
    out.push(
      `After a simulated ${rp.hours} h outage (${int(rp.readings)} readings of ${rp.meters} meters every ${rp.intervalS} s, waiting in the outbox) the gateway, ` +
        `polling its meters meanwhile, had all of them verified by settlement ${rp.totalS.toFixed(1)} s after it started (median of ${runs.length} runs): ${int(rp.readings / rp.totalS)} readings/s, ` +
        `an outage ${int((rp.hours * 3600) / rp.totalS)} times as long as its replay` +
        (runs.length > 1 ? `; the runs ranged from ${int(Math.min(...rates))} to ${int(Math.max(...rates))} readings/s (fsyncs of the outbox and the ledger set the pace)` : '') +
        `. Its resident memory rose to ${MiB(Math.max(...runs.map((r) => r.peakRss)))} MiB at most meanwhile. The settlement runs in the benchmark's process on the same two cores.`,
    );
  }
  return `**Reading it.** ${out.join(' ')}`;
}

function render(fp: FootprintResult | undefined, rp: ReplayResult[], unitFlags: string[] | undefined, ctx: Ctx): string {
  const lines = [
    `- Command: \`${ctx.command}\``,
    `- Run: ${new Date().toISOString()} · code at ${ctx.revision} · ${ctx.machine}`,
    `- Versions: Node-RED ${pkgVersion('node-red')}, node-red-contrib-modbus ${pkgVersion('node-red-contrib-modbus')} (its modbus-serial fork mapped to modbus-serial ${pkgVersion('modbus-serial')} by an npm override), mqtt out of Node-RED's core nodes`,
  ];
  if (fp) {
    const { block } = nodeRedDecoder();
    lines.push(
      `- Load: one simulated RS-485/TCP bridge (Modbus TCP on loopback) with ${fp.meters} SDM630 meters on unit ids 1–${fp.meters}; every process reads every meter's ${block.functionCode === 4 ? 'input' : 'holding'} registers ${block.address}–${block.address + block.count - 1} once a second and publish each reading over MQTT; started together, sampled each second, measured over ${fp.measureS} s after ${fp.warmupS} s of warm-up`,
      '',
      renderFootprint(fp),
    );
  }
  const started = unitFlags ? `\`node ${unitFlags.join(' ')} bin/gtx.js gateway run\`, as config/gtx-gateway.service starts it` : '`bin/gtx.js gateway run`';
  if (rp.length > 0) lines.push('', `**Outbox replay after a simulated outage** (each run: a fresh settlement and gateway; readings sealed straight into its outbox first, as the gateway batches them (batch_max_readings), then ${started}):`, '', renderReplay(rp));
  lines.push('', readingIt(fp, rp));
  return lines.join('\n');
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}


const SECTION = `## Footprint against Node-RED

The issue: "resident memory and CPU of \`gtx gateway run\` polling 32 simulated SDM630 meters on one
TCP bus every second, signing and publishing to a settlement, beside Node-RED 4 with
node-red-contrib-modbus and its MQTT out node polling the same meters [...] in one run, sampled
after a 5-minute warm-up [...] Target: at most half of Node-RED's resident memory and CPU. [...]
Also report the outbox replay rate (readings/s) after a simulated 24 h outage."

How \`test/bench/footprint-nodered.ts\` (\`npm run bench:nodered\`, or \`npm run bench -- --suite footprint\`
after \`npm run build\`) measures it:

- **One bus, three clients**: the benchmark's process serves one simulated RS-485/TCP bridge
  (\`devices/bus-simulator.ts\`) with 32 SDM630s on unit ids 1–32, runs a settlement per gateway
  (SQLite ledger, embedded broker with auth on) and a small aedes broker with a username and
  password for Node-RED (the settlement's broker admits only enrolled gateways, on their own
  topics). Three child processes start together: \`gtx gateway run\` twice, with 32 \`[[meters]]\`
  on one \`[[buses]]\` entry, \`poll_interval_s = 1\`, otherwise the shipped defaults, enrolled as
  an installer's code would, once as \`bin/gtx.js\` starts it (the node flags on its first line,
  the settlement's) and once with the node flags of \`config/gtx-gateway.service\`'s \`ExecStart\`
  (read from the unit); and Node-RED (\`node-red/red.js\`, the settings.js it ships with, editor
  on loopback) with a flow: one modbus-client with the editor's defaults, per meter one
  modbus-read of input registers 0–75 every second (the one block our SDM630 definition reads),
  a function node that decodes the definition's floats into a JSON reading, and an mqtt out node (QoS 1).
- **Measures**: \`VmRSS\` (and \`RssAnon\`) from \`/proc/PID/status\` each second, the mean and the
  highest sample over the window and \`VmHWM\`; CPU is utime + stime from \`/proc/PID/stat\` over the
  window. The gateway's work is the readings settlement verified in the window; Node-RED's, the
  messages its broker received (each checked for a plausible decoded voltage).
- **Replay**: a fresh settlement and gateway; 24 h of readings of 16 meters every 10 s are sealed
  straight into the gateway's outbox (\`Outbox.seal\`, batched as the gateway's batch_max_readings batches them), then
  \`gtx gateway run\` starts (as the systemd unit starts it), polling its live meters meanwhile, and the time until settlement
  has verified every sealed reading gives the rate; three runs, since it moves with the disk.
- \`--warmup-s\`, \`--measure-s\`, \`--meters\`, \`--replay-meters\`, \`--replay-interval-s\`,
  \`--replay-hours\`, \`--replay-runs\`, \`--skip-replay\`, \`--skip-footprint\`; \`--quick\` is 20 s + 20 s
  and one replay of a 1 h outage, written only with \`--out\`.
`;

function writeDoc(path: string, text: string): void {
  let doc = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const block = `${BEGIN}\n${text.trimEnd()}\n${END}`;
  const b = doc.indexOf(BEGIN);
  const e = doc.indexOf(END);
  doc = b >= 0 && e > b ? doc.slice(0, b) + block + doc.slice(e + END.length) : `${doc.trimEnd()}\n\n${SECTION}\n${block}\n`;
  writeFileSync(path, doc);
}

export async function main(argv: string[], viaSuite = false): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'warmup-s': { type: 'string' },
        'measure-s': { type: 'string' },
        meters: { type: 'string', default: '32' },
        'replay-meters': { type: 'string', default: '16' },
        'replay-interval-s': { type: 'string', default: '10' },
        'replay-hours': { type: 'string' },
        'replay-runs': { type: 'string' },
        'skip-replay': { type: 'boolean', default: false },
        'skip-footprint': { type: 'boolean', default: false },
        out: { type: 'string' },
        quick: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const warmupS = Number(values['warmup-s'] ?? (values.quick ? 20 : 300));
  const measureS = Number(values['measure-s'] ?? (values.quick ? 20 : 120));
  const meters = Number(values.meters);
  const replayMeters = Number(values['replay-meters']);
  const intervalS = Number(values['replay-interval-s']);
  const hours = Number(values['replay-hours'] ?? (values.quick ? 1 : 24));
  const replayRuns = Number(values['replay-runs'] ?? (values.quick ? 1 : 3));
  const whole = (n: number, max: number) => Number.isInteger(n) && n >= 1 && n <= max;
  if (!whole(warmupS, 86_400) || !whole(measureS, 86_400) || !whole(meters, 247) || !whole(replayMeters, 247) || !whole(replayRuns, 100) || !(intervalS >= 1) || !(hours > 0)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (!existsSync(join(ROOT, 'dist/bin/cli.js'))) {
    process.stderr.write('dist/ is missing: run `npm run build` first (npm run bench:nodered does)\n');
    return 2;
  }
  if (!values['skip-footprint'] && !existsSync(NODE_RED)) {
    process.stderr.write('node-red is not installed (a dev dependency): run `npm install`\n');
    return 2;
  }
  const out = values.out ? resolve(values.out) : values.quick ? undefined : join(ROOT, 'docs/benchmarks.md');

  const fp = values['skip-footprint'] ? undefined : await sideBySide(warmupS, measureS, meters);
  // The rate moves from run to run with the disk's fsync latency: a few runs, one after the other.
  const rp: ReplayResult[] = [];
  // Started as a Raspberry Pi runs it (the systemd unit's flags), when the unit is there.
  const unitFlags = systemdUnitFlags();
  for (let i = 0; !values['skip-replay'] && i < replayRuns; i++) rp.push(await replay(replayMeters, intervalS, hours, unitFlags));

  const npmEvent = process.env.npm_lifecycle_event;
  const command =
    npmEvent === 'bench:nodered'
      ? ['npm run bench:nodered', ...(argv.length ? ['--', ...argv] : [])].join(' ')
      : npmEvent === 'bench' && viaSuite
        ? ['npm run bench -- --suite footprint', ...argv].join(' ')
        : ['node --import tsx test/bench/footprint-nodered.ts', ...argv].join(' ');
  const text = render(fp, rp, unitFlags, {
    command,
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`,
    revision: codeRevision(ROOT),
  });
  process.stdout.write(`\n${text}\n`);
  if (out) {
    writeDoc(out, text);
    process.stdout.write(`\nwritten to ${out}\n`);
  }
  const failed = (fp !== undefined && [...fp.gateways, fp.nodeRed].some((x) => x.work === 0)) || rp.some((r) => r.verified < r.readings);
  return failed ? 1 : 0;
}

// Run as a script; run.ts imports main() for `--suite footprint`.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`\nnode-red footprint bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
