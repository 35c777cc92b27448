import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { getDefinition } from '../../devices/catalog.ts';
import { createSimClock } from '../../devices/clock.ts';
import { createProfile, type ProfileName } from '../../devices/profiles.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { gatewayDefaults, tcpBus } from '../../gateway/config.ts';
import { saveCredentials, savedCredentials } from '../../gateway/enroll.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { startGateway, type Gateway } from '../../gateway/main.ts';
import { gatewayId, meterId } from '../../protocol/index.ts';
import { defaultSettlementConfig } from '../../settlement/config.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { command, parseFlags, portNumber, positiveNumber, UsageError } from '../args.ts';
import { untilStopSignal } from '../stop-signal.ts';
import { formatPrice } from '../../settlement/market/money.ts';
import { DemoGovernance } from './demo-governance.ts';
import { demoKeys } from './demo-keys.ts';
import { sealHistory } from './demo-history.ts';
import { DemoHomes, Ticker } from './demo-homes.ts';
import { DemoCertificates } from './demo-recs.ts';
import { DemoTrader } from './demo-trader.ts';

const DEMO = command(
  'demo',
  `gtx demo [--data DIR] [--homes N] [--speed N] [--mqtt-port N] [--http-port N] [--fresh] [--duration S]

  --data DIR       where the ledger and the gateways' keys and outboxes live (default ./data)
  --homes N        simulated homes, one meter and one gateway each (default 4; every other home has rooftop PV)
  --speed N        simulated seconds per real second (default 1); the whole demo shares this clock
  --mqtt-port N    embedded broker port (default 1883; a free port is taken if it is busy)
  --http-port N    REST API and /metrics port (default 8080; likewise)
  --fresh          delete DIR first
  --duration S     stop by itself after S seconds (default: run until Ctrl-C or SIGTERM)`,
  {
    data: { type: 'string' },
    homes: { type: 'string' },
    speed: { type: 'string' },
    'mqtt-port': { type: 'string' },
    'http-port': { type: 'string' },
    fresh: { type: 'boolean' },
    duration: { type: 'string' },
  },
);

/** Days of recorded readings a new demo home arrives with. */
const HISTORY_DAYS = 21;

const HOMES: Array<{ model: string; profile: ProfileName }> = [
  { model: 'sdm120', profile: 'household' },
  { model: 'sdm120', profile: 'prosumer' },
  { model: 'sdm630', profile: 'household' },
  { model: 'sdm630', profile: 'prosumer' },
];

async function portIsFree(port: number): Promise<boolean> {
  if (port === 0) return true;
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function run(argv: string[]): Promise<void> {
  const f = parseFlags(argv, DEMO);
  const dataDir = resolve(f.data ?? './data');
  const homes = positiveNumber(f.homes, '--homes', DEMO, 4);
  if (!Number.isInteger(homes) || homes > 64) throw new UsageError(`--homes must be a whole number from 1 to 64, got "${f.homes}"`, DEMO.name);
  const speed = positiveNumber(f.speed, '--speed', DEMO, 1);
  const mqttPort = portNumber(f['mqtt-port'], '--mqtt-port', DEMO, 1883);
  const httpPort = portNumber(f['http-port'], '--http-port', DEMO, 8080);
  const duration = f.duration === undefined ? undefined : positiveNumber(f.duration, '--duration', DEMO, 0);
  if (f.fresh) rmSync(dataDir, { recursive: true, force: true });

  const clock = createSimClock({ speed });
  const now = () => Math.floor(clock.now());
  const logLevel = process.env.GTX_LOG_LEVEL ?? 'warn';

  const cfg = defaultSettlementConfig(dataDir);
  cfg.logLevel = logLevel;
  // The demo's market trades around the clock in 15-minute intervals, small orders, a new price
  // every minute; a delivery is settled two minutes after it ends (a gap's energy is estimated
  // by then). With --speed 20 a trade goes from order to settlement in a few minutes.
  const demoMarket = cfg.markets[0]!;
  demoMarket.rules = {
    ...demoMarket.rules,
    pricing: { ...demoMarket.rules.pricing, updateIntervalMs: 60_000 },
    auction: { ...demoMarket.rules.auction, intervalMinutes: 15, openMinute: 0, closeMinute: 1440, minVolumeWh: 100 },
  };
  cfg.ingest.gapGraceMs = 120_000;
  // New homes arrive with three weeks of recorded readings (demo-history.ts), so baselines and
  // certificates exist from the start; five comparable days make a baseline for weekends too.
  cfg.rewards = { ...cfg.rewards, baselineDays: 5 };
  // A vote that takes minutes, not the 7 + 2 days of the real rules, so it can be watched.
  cfg.governance = { ...cfg.governance, rules: { ...cfg.governance.rules, votingMs: 20 * 60_000, executionDelayMs: 10 * 60_000 } };
  const settlementLog = pino({ name: 'settlement', level: logLevel }, pino.destination(2));
  // The usual ports may be taken (the CI machine runs Mosquitto on 1883): then take free ones.
  const brokerPort = (await portIsFree(mqttPort)) ? mqttPort : 0;
  cfg.mqtt = { mode: 'embedded', listenHost: '127.0.0.1', listenPort: brokerPort, clientId: 'gtx-settlement-demo', auth: true };
  if (brokerPort !== mqttPort) console.log(`port ${mqttPort} is busy (another broker?); the embedded broker takes a free port`);
  cfg.http = { host: '127.0.0.1', port: (await portIsFree(httpPort)) ? httpPort : 0 };
  if (cfg.http.port !== httpPort) console.log(`port ${httpPort} is busy; the HTTP server takes a free port`);
  // Market jobs look for work at least every 30 simulated seconds, however fast the clock runs.
  const jobEvery = Math.max(500, Math.min(30_000, 30_000 / speed));
  const settlement: Settlement = await startSettlement(cfg, { now, log: settlementLog, marketJobEveryMs: { auctions: jobEvery, deliveries: jobEvery } });

  const sims: MeterSimulator[] = [];
  const stateFile = join(dataDir, 'demo-meters.json');
  const simState = (existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, 'utf8')) : {}) as Record<string, { importKWh: number; exportKWh: number }>;
  const gateways: Gateway[] = [];
  const gwLog = pino({ name: 'gateway', level: logLevel }, pino.destination(2));
  const lastReading = async (meter: string) => {
    const r = await settlement.ledger.db.selectFrom('readings').select(['import_wh', 'export_wh']).where('meter', '=', meter).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    return r && { importWh: Number(r.import_wh), exportWh: Number(r.export_wh) };
  };
  // A new home's recorded past, sealed before any meter is polled (demo-history.ts).
  const fresh = [];
  for (let i = 1; i <= homes; i++) {
    const id = `gw-home-${i}`;
    const gcfg = gatewayDefaults(id, join(dataDir, 'gateways', id));
    if (!(await lastReading(`home-${i}-main`)) && !simState[`home-${i}-main`] && !existsSync(gcfg.outboxFile)) fresh.push({ i, id, gcfg });
  }
  if (fresh.length) console.log(`sealing ${HISTORY_DAYS} days of recorded readings for ${fresh.length} new home(s); their gateways replay them on start…`);
  for (const { i, id, gcfg } of fresh) {
    const home = HOMES[(i - 1) % HOMES.length]!;
    const definition = getDefinition(home.model);
    const key = loadOrCreateKey(gcfg.keyFile);
    const power = createProfile(home.profile, { seed: i });
    simState[`home-${i}-main`] = sealHistory({ outboxFile: gcfg.outboxFile, gateway: gatewayId(id), key: key.privateKey, meter: meterId(`home-${i}-main`), power, maxPowerW: definition.maxPowerW, toMs: now(), days: HISTORY_DAYS });
  }
  for (let i = 1; i <= homes; i++) {
    const home = HOMES[(i - 1) % HOMES.length]!;
    // A meter's counters never go back: continue from where the last run stopped.
    const meter = `home-${i}-main`;
    const id = `gw-home-${i}`;
    const gcfg = gatewayDefaults(id, join(dataDir, 'gateways', id));
    const key = loadOrCreateKey(gcfg.keyFile);
    const last = await lastReading(meter);
    const saved = simState[meter];
    const sim = new MeterSimulator({
      definition: getDefinition(home.model),
      profile: home.profile,
      seed: i,
      clock: now,
      initialImportKWh: Math.max(saved?.importKWh ?? 0, (last?.importWh ?? 0) / 1000),
      initialExportKWh: Math.max(saved?.exportKWh ?? 0, (last?.exportWh ?? 0) / 1000),
    });
    const { port } = await sim.start({ port: 0 });
    sims.push(sim);
    gcfg.pollIntervalMs = 2_000;
    gcfg.batchMaxReadings = 4;
    gcfg.batchMaxAgeMs = 4_000;
    gcfg.mqtt = { url: settlement.brokerUrl, ackTimeoutMs: 10_000, maxInFlight: 16 };
    const definition = getDefinition(home.model);
    gcfg.meters = [
      {
        id: meterId(`home-${i}-main`),
        definition,
        bus: tcpBus(gcfg, '127.0.0.1', port),
        unitId: 1,
        timeoutMs: 2_000,
        role: home.profile === 'household' ? 'consumption' : 'bidirectional',
        ratedPowerW: definition.maxPowerW,
        energySource: home.profile === 'household' ? null : 'Solar',
      },
    ];
    // The demo enrolls its own gateways the way an installer does: a one-time code, then the
    // enrollment; the gateway keeps the MQTT login it is given. A restart reuses it.
    if (!(await settlement.ledger.getGateway(id)) || !savedCredentials(gcfg.dataDir)) {
      const { code } = await settlement.enrollment.issueCode({ market: cfg.markets[0]!.id, owner: `prosumer-${i}`, ttlMs: 600_000 });
      const res = await settlement.enrollment.enroll({
        code,
        gateway: id,
        publicKeyPem: key.publicKeyPem,
        meters: gcfg.meters.map((m) => ({ id: m.id, model: m.definition.id, role: m.role, ratedPowerW: m.ratedPowerW, energySource: m.energySource })),
      });
      saveCredentials(gcfg.dataDir, { ...res.mqtt, market: res.market });
    }
    gateways.push(await startGateway(gcfg, { now, log: gwLog }));
    console.log(`home ${i}: ${home.model} ${home.profile.padEnd(9)} modbus-tcp://127.0.0.1:${port}  gateway ${id}  meter home-${i}-main`);
  }
  console.log(`MQTT broker   ${settlement.brokerUrl}   (try: mosquitto_sub -h 127.0.0.1 -p ${new URL(settlement.brokerUrl).port} -t 'gtx/v1/#' -v)`);
  const accounts = Array.from({ length: homes }, (_, k) => `prosumer-${k + 1}`);
  const keys = settlement.httpUrl ? await demoKeys(settlement, dataDir, accounts) : undefined;
  const apiKey = keys?.utility;
  if (settlement.httpUrl) {
    console.log(`HTTP API      curl -H 'Authorization: Bearer ${apiKey}' ${settlement.httpUrl}/api/v1/meters   metrics ${settlement.httpUrl}/metrics`);
  }
  // The homes at the market, the certificate marketplace and the vote, each through the REST API
  // with the home's own prosumer key.
  const say = (line: string) => console.log(line);
  const community = new DemoHomes(
    settlement,
    accounts.map((account, k) => ({ account, sells: HOMES[k % HOMES.length]!.profile !== 'household' })),
  );
  const configFlag = dataDir === resolve('./data') ? '' : ` --config ${join(dataDir, 'settlement.toml')}`;
  if (configFlag) writeFileSync(join(dataDir, 'settlement.toml'), `# written by gtx demo, for gtx audit\n[settlement]\ndata_dir = ${JSON.stringify(dataDir)}\n`);
  const trader = new DemoTrader(settlement, community, demoMarket.id, say);
  const certificates = new DemoCertificates(community, say, (id) => `gtx audit rec ${id}${configFlag}`);
  const governance = new DemoGovernance(settlement, community, demoMarket.id, () => formatPrice(demoMarket.rules.pricing.pBalance, cfg.credits.defaultCurrency), say);
  const tickers = [trader, certificates, governance].map((x) => new Ticker(() => x.tick(), (e) => say(`demo: ${e.message}`)));
  if (settlement.httpUrl) {
    await community.load(join(dataDir, 'demo-prosumer-keys.json'));
    await governance.start();
    for (const t of tickers) t.start(5_000);
    console.log(`market        ${demoMarket.id}: 15-minute auctions around the clock; curl -H 'Authorization: Bearer ${apiKey}' ${settlement.httpUrl}/api/v1/trades`);
    console.log(`certificates  from the PV homes' export, hourly: curl -H 'Authorization: Bearer ${apiKey}' ${settlement.httpUrl}/api/v1/recs`);
    console.log(`rewards       households below their baseline are paid NRG daily: curl -H 'Authorization: Bearer ${apiKey}' ${settlement.httpUrl}/api/v1/rewards`);
    // A person signs in to the pages with one of these (docs/web.md): what each sees depends on the role.
    console.log(`web pages     ${settlement.httpUrl}/   sign in with one of these keys:`);
    console.log(`  prosumer    ${community.key(accounts[0]!)}   home 1 (account ${accounts[0]})`);
    console.log(`  installer   ${keys!.installer}   customers ${accounts.join(', ')}`);
    console.log(`  utility     ${keys!.utility}`);
  }
  console.log(`ledger        ${cfg.ledger.sqlitePath}`);
  console.log(`audit         gtx audit meters${configFlag}; gtx audit export --meter home-1-main --out ./audit-home-1${configFlag}`);
  console.log(`clock         ${speed}x real time${speed === 1 ? '' : ' (simulated)'}; Ctrl-C stops`);

  const rewardsPaid = async () => Number((await settlement.ledger.db.selectFrom('reward_payments').select((eb) => eb.fn.countAll<number>().as('n')).where('amount', '!=', '0').executeTakeFirst())?.n ?? 0);
  const status = setInterval(() => {
    const st = settlement.stats;
    const rejected = Object.values(st.rejected).reduce((a, b) => a + (b ?? 0), 0);
    const outbox = gateways.reduce((a, g) => a + g.outboxDepth(), 0);
    const polls = gateways.reduce((a, g) => a + g.stats().polls, 0);
    const t = new Date(now()).toISOString().slice(11, 19);
    void Promise.all([settlement.market.store.counts(), settlement.ledger.db.selectFrom('recs').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst(), rewardsPaid()]).then(
      ([m, recs, rewards]) =>
        console.log(
          `[${t}Z] readings verified ${st.readingsVerified} · rejected ${rejected} · outbox ${outbox} · meter polls ${polls} · orders open ${m.openOrders} · auctions ${m.auctions} · trades ${m.trades} (settled ${m.settledTrades}) · RECs ${Number(recs?.n ?? 0)} (retired ${certificates.retired}) · rewards paid ${rewards}`,
        ),
      () => undefined,
    );
  }, 3_000);

  await untilStopSignal(duration ? { signal: AbortSignal.timeout(duration * 1000) } : {});
  clearInterval(status);
  console.log('stopping…');
  for (const t of tickers) await t.stop();
  await Promise.all(gateways.map((g) => g.stop({ drainMs: 3_000 })));
  await settlement.idle();
  // The simulated meters' counters, for the next run (the gateways have read their last values).
  const state: Record<string, { importKWh: number; exportKWh: number }> = {};
  sims.forEach((sim, i) => {
    const snap = sim.snapshot();
    state[`home-${i + 1}-main`] = { importKWh: snap.importKWh, exportKWh: snap.exportKWh };
  });
  writeFileSync(stateFile, JSON.stringify(state, null, 2));
  for (const s of sims) await s.stop();
  const counts = await settlement.ledger.counts();
  await settlement.stop();
  console.log(`stopped: ledger holds ${counts.readings} readings in ${counts.envelopes} envelopes; ${counts.rejections} rejections recorded`);
}
