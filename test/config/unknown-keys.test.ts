import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GatewayConfigError, loadGatewayConfig } from '../../gateway/config.ts';
import { closest } from '../../protocol/config-keys.ts';
import { ConfigError, loadSettlementConfig } from '../../settlement/config.ts';
import { tempDir } from '../support/tmp.ts';

/** Both loaders refuse what they do not know, naming file, table and key (protocol/config-keys.ts). */

const dir = tempDir('gtx-config-keys-');
afterAll(() => dir.remove());

let n = 0;
function file(name: string, text: string): string {
  const path = join(dir.path, `${n++}-${name}`);
  writeFileSync(path, text);
  return path;
}

const meter = `[[meters]]
id = "m-1"
model = "sdm120"
host = "127.0.0.1"
`;

describe('config/settlement.toml refuses unknown keys', () => {
  const cases: Array<[string, string, string]> = [
    ['a typo at the top level', 'log_level = "debug"\n', ': log_level must be inside a table; did you mean log_level under [settlement]?'],
    ['an unknown key at the top level', 'colour = "blue"\n', ': unknown key colour outside any table; keys belong in a table ([settlement], [ledger], [[markets]], [dynamic_pricing], [auction], [stable_credits], [governance], [rewards], [recs], [enrollment], [mqtt], [ingest], [http], [influxdb])'],
    ['a typo in a table', '[ledger]\nsqlite_pth = "x.sqlite"\n', ' [ledger]: unknown key sqlite_pth; did you mean sqlite_path?'],
    ['a key with no close match', '[http]\nport = 8080\n', ' [http]: unknown key port; known keys: listen, enabled, write_rate_limit_per_minute'],
    [
      'a typo in an array-of-tables entry',
      '[[markets]]\nid = "a"\n[[markets]]\nid = "b"\ntimezone = "Asia/Bangkok"\n',
      ' [[markets]] #2: unknown key timezone; did you mean time_zone?',
    ],
    ['an unknown table', '[ledgr]\nsqlite_path = "x.sqlite"\n', ': unknown table [ledgr]; did you mean [ledger]?'],
    ['an unknown table with no close match', '[tariffs]\nx = 1\n', ': unknown table [tariffs]; known tables: [settlement], [ledger], [[markets]], [dynamic_pricing], [auction], [stable_credits], [governance], [rewards], [recs], [enrollment], [mqtt], [ingest], [http], [influxdb]'],
    ['a typo in [auction]', '[auction]\nmin_volum = 1.0\n', ' [auction]: unknown key min_volum; did you mean min_volume?'],
    ['a typo in a market’s own [markets.auction]', '[[markets]]\nid = "a"\n[markets.auction]\nmarket_opn = "07:00"\n', ' [[markets]] #1 [auction]: unknown key market_opn; did you mean market_open?'],
    ['a typo in [dynamic_pricing]', '[dynamic_pricing]\np_balanse = 4.0\n', ' [dynamic_pricing]: unknown key p_balanse; did you mean p_balance?'],
    ['a table inside a table', '[mqtt.tls]\nport = 8883\n', ' [mqtt]: unknown table [mqtt.tls]; known keys: listen, auth, tls_listen, tls_key_file, tls_cert_file, url, username, password, shared_group, mosquitto_password_file, mosquitto_pid_file, client_id'],
    ['a dash for an underscore', '[ingest]\nmax-payload-bytes = 4096\n', ' [ingest]: unknown key max-payload-bytes; did you mean max_payload_bytes?'],
  ];
  it.each(cases)('%s', (_what, text, message) => {
    const path = file('settlement.toml', text);
    expect(() => loadSettlementConfig(path)).toThrow(ConfigError);
    expect(() => loadSettlementConfig(path)).toThrow(new ConfigError(`${path}${message}`));
  });

  it('still loads every key it documents', () => {
    const path = file(
      'settlement.toml',
      `[settlement]\ndata_dir = "d"\nlog_level = "warn"\n[ledger]\nsqlite_path = "l.sqlite"\n[[markets]]\nid = "m"\nname = "M"\ntime_zone = "UTC"\ninterval_minutes = 60\n` +
        `[enrollment]\ncode_ttl_hours = 2\n[mqtt]\nlisten = "127.0.0.1:0"\nauth = false\nclient_id = "c"\n[http]\nenabled = false\n` +
        `[influxdb]\nurl = "http://127.0.0.1:8086"\ndatabase = "d"\nflush_interval_ms = 100\nmax_backlog_points = 1000\n`,
    );
    const cfg = loadSettlementConfig(path);
    expect(cfg.markets).toMatchObject([{ id: 'm', name: 'M', timeZone: 'UTC', intervalMinutes: 60 }]);
    expect(cfg.http).toBeNull();
  });

  it('loads every market key, with per-market overrides, as integers and bigints', () => {
    const path = file(
      'settlement.toml',
      `[dynamic_pricing]\np_balance = 5.25\np_con = 1.5\nk = 2.0\nupdate_interval = 60\nmin_ratio = 0.05\n` +
        `[auction]\ninterval_minutes = 60\nmarket_open = "07:30"\nmarket_close = "24:00"\nmin_volume = 0.5\nmax_price_deviation = 0.25\n` +
        `[stable_credits]\nsupported_currencies = ["THB", "USD"]\ndefault_currency = "THB"\nconversion_fee = 0.002\n[stable_credits.rates]\nTHB_USD = 0.03\n` +
        `[[markets]]\nid = "a"\ninterval_minutes = 15\n[[markets]]\nid = "b"\ninterval_minutes = 30\n[markets.auction]\nmin_volume = 2.0\n[markets.dynamic_pricing]\np_balance = 3.0\n`,
    );
    const cfg = loadSettlementConfig(path);
    const [a, b] = cfg.markets;
    expect(a!.rules).toEqual({
      currency: 'THB',
      pricing: { pBalance: 525n, pCon: 150n, k: 2, minRatio: 0.05, updateIntervalMs: 60_000 },
      auction: { intervalMinutes: 60, openMinute: 450, closeMinute: 1440, minVolumeWh: 500, maxPriceDeviationPpm: 250_000 },
    });
    expect(b!.rules.auction.minVolumeWh).toBe(2000);
    expect(b!.rules.pricing.pBalance).toBe(300n);
    expect(b!.rules.pricing.pCon).toBe(150n);
    expect(cfg.credits).toMatchObject({ currencies: ['THB', 'USD'], defaultCurrency: 'THB', fee: { num: 1n, den: 500n }, rates: { THB_USD: 30_000_000n } });
  });

  it('loads [governance] as NRG base units (18 decimals), past 64 bits', () => {
    const cfg = loadSettlementConfig(file('settlement.toml', '[governance]\nnrg_total_supply = 2000000000\nstake_min_amount = 0.5\nvote_threshold = 1500\nincentive_pool = 1000\n'));
    expect(cfg.governance).toEqual({
      supply: { totalSupply: 2_000_000_000n * 10n ** 18n, incentivePool: 1000n * 10n ** 18n },
      rules: { stakeMin: 5n * 10n ** 17n, voteThreshold: 1500n * 10n ** 18n },
    });
    expect(loadSettlementConfig(file('settlement.toml', '')).governance.supply.totalSupply).toBe(10n ** 27n);
  });

  it('loads [rewards] and a market’s holidays', () => {
    const cfg = loadSettlementConfig(file('settlement.toml', '[rewards]\nrate = 0.25\nbaseline_days = 5\n[[markets]]\nid = "m"\nholidays = ["2026-12-05"]\n'));
    expect(cfg.rewards).toEqual({ ratePerKwh: 25n * 10n ** 16n, baselineDays: 5 });
    expect(cfg.markets[0]!.holidays).toEqual(['2026-12-05']);
    expect(() => loadSettlementConfig(file('settlement.toml', '[[markets]]\nid = "m"\nholidays = ["5 Dec"]\n'))).toThrow(/holidays must be a list of local dates/);
  });

  it('loads [recs]', () => {
    expect(loadSettlementConfig(file('settlement.toml', '[recs]\nmin_volume_wh = 1000\nmax_period_hours = 48\n')).recs).toEqual({ minVolumeWh: 1000, maxPeriodMs: 48 * 3_600_000 });
    expect(loadSettlementConfig(file('settlement.toml', '')).recs).toEqual({ minVolumeWh: 1, maxPeriodMs: 24 * 3_600_000 });
  });

  it.each([
    ['[recs]\nmax_period_hours = 24\n[ingest]\nmax_backfill_days = 1\n', /max_period_hours must be shorter than \[ingest\] max_backfill_days \(24 h\)/],
    ['[recs]\nmin_volume_wh = 0.5\n', /min_volume_wh must be an integer ≥ 1/],
    ['[governance]\nincentive_pool = 2000000000\n', /incentive_pool must be from 0 to nrg_total_supply/],
    ['[governance]\nstake_min_amount = 0\n', /stake_min_amount must be positive/],
    ['[governance]\nvote_treshold = 1\n', /unknown key vote_treshold; did you mean vote_threshold\?/],
    ['[auction]\nmarket_open = "6am"\n', /market_open must be a time like "06:00"/],
    ['[auction]\nmarket_open = "22:00"\nmarket_close = "06:00"\n', /market_close must be after market_open/],
    ['[auction]\ninterval_minutes = 20\n', /multiple of the market's energy interval/],
    ['[dynamic_pricing]\np_balance = 4.005\n', /\[dynamic_pricing\].*p_balance|4\.005/],
    ['[dynamic_pricing]\nmin_ratio = 1.5\n', /min_ratio/],
    ['[dynamic_pricing]\nk = 0\n', /k must be > 0/],
    ['[auction]\nmax_price_deviation = 1.5\n', /max_price_deviation/],
    ['[stable_credits]\ndefault_currency = "JPY"\n', /default_currency must be one of/],
    ['[stable_credits]\nsupported_currencies = ["THB", "GBP"]\n', /supported_currencies/],
  ])('refuses market nonsense with the key named: %s', (text, message) => {
    expect(() => loadSettlementConfig(file('settlement.toml', text))).toThrow(message);
  });
});

describe('a gateway TOML refuses unknown keys', () => {
  const cases: Array<[string, string, string]> = [
    ['a key at the top level', 'id = "gw-1"\n', ': id must be inside a table; did you mean id under [gateway]?'],
    ['a typo in a table', '[gateway]\nid = "gw-1"\npoll_intervall_s = 1\n', ' [gateway]: unknown key poll_intervall_s; did you mean poll_interval_s?'],
    ['a typo in [mqtt]', '[gateway]\nid = "gw-1"\n[mqtt]\nurll = "mqtt://x"\n', ' [mqtt]: unknown key urll; did you mean url?'],
    ['a typo in the second [[meters]] entry', `[gateway]\nid = "gw-1"\n${meter}[[meters]]\nid = "m-2"\nmodel = "sdm120"\nhots = "127.0.0.1"\n`, ' [[meters]] #2: unknown key hots; did you mean host?'],
    ['an unknown array of tables', '[gateway]\nid = "gw-1"\n[[meter]]\nid = "m-1"\n', ': unknown table [[meter]]; did you mean [[meters]]?'],
    ['an unknown table', '[gateway]\nid = "gw-1"\n[modbus]\nbaud = 9600\n', ': unknown table [modbus]; known tables: [gateway], [mqtt], [[buses]], [[meters]], [home_assistant]'],
  ];
  it.each(cases)('%s', (_what, text, message) => {
    const path = file('gw.toml', text);
    expect(() => loadGatewayConfig(path)).toThrow(new GatewayConfigError(`${path}${message}`));
  });
});

describe('a gateway TOML with buses', () => {
  const gw = '[gateway]\nid = "gw-1"\n';
  it('puts meters on named serial and TCP buses, and turns host/port into a TCP bus of its own', () => {
    const cfg = loadGatewayConfig(
      file(
        'gw-buses.toml',
        gw +
          '[[buses]]\nname = "rs485"\nserial = "/dev/ttyUSB0"\nbaud = 19200\nparity = "even"\n' +
          '[[buses]]\nname = "bridge"\ntcp = "192.168.1.50"\nconnect_timeout_s = 2\n' +
          '[[meters]]\nid = "m-1"\nmodel = "sdm120"\nbus = "rs485"\nunit_id = 1\n' +
          '[[meters]]\nid = "m-2"\nmodel = "sdm630"\nbus = "rs485"\nunit_id = 2\npoll_interval_s = 30\ntimeout_s = 0.5\n' +
          '[[meters]]\nid = "m-3"\nmodel = "sdm120"\nbus = "bridge"\nunit_id = 5\n' +
          '[[meters]]\nid = "m-4"\nmodel = "sdm120"\nhost = "10.0.0.9"\nport = 5020\n',
      ),
    );
    expect(cfg.buses).toEqual([
      { kind: 'rtu', name: 'rs485', path: '/dev/ttyUSB0', baudRate: 19200, parity: 'even', dataBits: 8, stopBits: 1 },
      { kind: 'tcp', name: 'bridge', host: '192.168.1.50', port: 502, connectTimeoutMs: 2000 },
      { kind: 'tcp', name: '10.0.0.9:5020', host: '10.0.0.9', port: 5020, connectTimeoutMs: 3000 },
    ]);
    expect(cfg.meters.map((m) => [m.id, m.bus, m.unitId, m.intervalMs, m.timeoutMs])).toEqual([
      ['m-1', 'rs485', 1, undefined, 1000],
      ['m-2', 'rs485', 2, 30_000, 500],
      ['m-3', 'bridge', 5, undefined, 1000],
      ['m-4', '10.0.0.9:5020', 1, undefined, 1000],
    ]);
  });

  it.each([
    ['[[buses]]\nname = "a"\n', /\[\[buses\]\] #1: give either serial = "\/dev\/ttyUSB0" \(Modbus RTU\) or tcp = "host:port"/],
    ['[[buses]]\nname = "a"\nserial = "/dev/ttyS0"\nparity = "mark"\n', /parity must be none, even or odd/],
    ['[[buses]]\nname = "a"\ntcp = "h:1"\nbaud = 9600\n', /baud is for a serial bus; this one is tcp/],
    ['[[buses]]\nname = "a"\ntcp = "h:1"\n[[buses]]\nname = "a"\ntcp = "h:2"\n', /bus name a appears twice/],
    ['[[meters]]\nid = "m"\nmodel = "sdm120"\nbus = "nope"\n', /bus "nope" is not defined; known buses: none \(add a \[\[buses\]\] table\)/],
    ['[[buses]]\nname = "a"\ntcp = "h:1"\n[[meters]]\nid = "m"\nmodel = "sdm120"\nbus = "a"\nhost = "x"\n', /give either bus = "…" or host/],
    ['[[buses]]\nname = "a"\ntcp = "h:1"\n[[meters]]\nid = "m"\nmodel = "sdm120"\nbus = "a"\n[[meters]]\nid = "n"\nmodel = "sdm120"\nbus = "a"\n', /unit 1 on bus a is already meter m/],
    ['[[meters]]\nid = "m"\nmodel = "sdm120"\nhost = "x"\nunit_id = 248\n', /unit_id must be a whole number from 0 to 247/],
  ])('refuses a bus mistake with a clear message: %s', (text, message) => {
    expect(() => loadGatewayConfig(file('gw-bad-bus.toml', gw + text))).toThrow(message);
  });
});

describe('closest', () => {
  it('suggests only what is close', () => {
    expect(closest('sqlite_pth', ['sqlite_path', 'database_url'])).toBe('sqlite_path');
    expect(closest('SQLITE-PATH', ['sqlite_path'])).toBe('sqlite_path');
    expect(closest('port', ['listen', 'enabled', 'host'])).toBeUndefined();
    expect(closest('settlment', ['demo', 'settlement', 'gateway'])).toBe('settlement');
  });
});
