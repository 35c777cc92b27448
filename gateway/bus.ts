import modbus from 'modbus-serial';
import { createDecoder, type DecodedReading, type MeterDecoder } from '../devices/decoder.ts';
import { busUrl, type BusConfig, type MeterConfig } from './config.ts';

// CJS interop: under NodeNext the default import is module.exports; the class is its `default`.
const ModbusRTU = modbus.default;
type ModbusClient = InstanceType<typeof ModbusRTU>;

export class MeterReadError extends Error {
  override readonly name = 'MeterReadError';
}

/** What `gtx gateway status` and the status page show per meter. */
export interface MeterState {
  id: string;
  bus: string;
  unitId: number;
  model: string;
  /** ok: answered last time; failing: backing off after failures; new: not read yet. */
  state: 'new' | 'ok' | 'failing';
  lastReadAtMs: number | null;
  lastValues: DecodedReading | null;
  lastError: string | null;
  failures: number;
  /** When it is read next (monotonic clock of this process). */
  nextDueMono: number;
}

export interface BusPollerOptions {
  /** Interval of a meter without its own poll_interval_s. */
  defaultIntervalMs: number;
  /** A failing meter waits interval × 2^(failures−1), at most this. */
  maxBackoffMs?: number;
  mono?: () => number;
  now?: () => number;
  onReading: (meter: MeterConfig, values: DecodedReading) => void;
  /** `first`: the first failure since it last answered (log once per outage). */
  onFailure: (meter: MeterConfig, error: MeterReadError, first: boolean) => void;
  onRecovery: (meter: MeterConfig) => void;
}

interface Slot {
  cfg: MeterConfig;
  /** Keeps what it discovered (a SunSpec device's model chain) between readings. */
  decoder: MeterDecoder;
  intervalMs: number;
  state: MeterState;
}

/** Consecutive timeouts on a TCP bus after which the connection is taken for dead and reopened. */
const TCP_TIMEOUTS_BEFORE_RECONNECT = 3;

/**
 * One bus's connection: opened when needed, one request at a time (callers take turns; the
 * poller and a scan each hold one), RTU's inter-frame silence kept, reopened after it fails.
 */
export class BusClient {
  private client: ModbusClient | null = null;
  private timeoutsInARow = 0;

  constructor(readonly bus: BusConfig) {}

  get where(): string {
    return busUrl(this.bus);
  }

  /**
   * Reads registers of `unitId` with a per-request timeout. Errors are as modbus-serial throws
   * them (a Modbus exception has `modbusCode`; a timeout is a TransactionTimedOutError), after
   * the connection was kept or closed as the error calls for.
   */
  async read(unitId: number, timeoutMs: number, fc: 3 | 4, address: number, count: number): Promise<number[]> {
    const client = await this.connect();
    client.setID(unitId);
    client.setTimeout(timeoutMs);
    try {
      const res = fc === 4 ? await client.readInputRegisters(address, count) : await client.readHoldingRegisters(address, count);
      this.timeoutsInARow = 0;
      return res.data;
    } catch (e) {
      await this.afterError(e);
      throw e;
    } finally {
      await this.gap();
    }
  }

  /** RTU frames are told apart by silence: 3.5 characters between them (at least 1.75 ms). */
  private async gap(): Promise<void> {
    if (this.bus.kind !== 'rtu') return;
    const bits = 1 + this.bus.dataBits + (this.bus.parity === 'none' ? 0 : 1) + this.bus.stopBits;
    const ms = Math.max(1.75, (3.5 * bits * 1000) / this.bus.baudRate);
    await new Promise((r) => setTimeout(r, Math.ceil(ms)));
  }

  private async afterError(e: unknown): Promise<void> {
    const err = e as { modbusCode?: number; name?: string };
    if (err.modbusCode !== undefined) return; // the device answered, with an exception: the line is fine
    if (err.name === 'TransactionTimedOutError') {
      // One silent meter is not a dead link; several timeouts in a row on TCP likely are (a
      // half-open connection sends nothing and reports no error).
      if (this.bus.kind === 'tcp' && ++this.timeoutsInARow >= TCP_TIMEOUTS_BEFORE_RECONNECT) await this.close();
      return;
    }
    await this.close();
  }

  /** Opens the port or connection if it is not open; throws BusOpenError when it cannot. */
  async connect(): Promise<ModbusClient> {
    if (this.client?.isOpen) return this.client;
    await this.close();
    const client = new ModbusRTU();
    // A port that fails between requests (an adapter pulled out) reports it as an 'error'
    // event; unhandled, that would end the process. The next request finds it closed and reopens.
    client.on('error', () => undefined);
    const bus = this.bus;
    try {
      if (bus.kind === 'tcp') {
        // modbus-serial sets no connect timeout: an unreachable host would hold the bus for the OS's (minutes).
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          client.connectTCP(bus.host, { port: bus.port }),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no connection within ${bus.connectTimeoutMs} ms`)), bus.connectTimeoutMs);
          }),
        ]).finally(() => clearTimeout(timer));
      } else {
        await client.connectRTUBuffered(bus.path, { baudRate: bus.baudRate, parity: bus.parity, dataBits: bus.dataBits, stopBits: bus.stopBits });
        await this.gap();
      }
    } catch (e) {
      await closeQuietly(client, bus.kind);
      throw new BusOpenError(
        `cannot open ${this.where}: ${describe(e)}; ${bus.kind === 'tcp' ? 'is the meter (or its Modbus gateway) on the network?' : 'is the RS-485 adapter plugged in, and may this user open it (group dialout)?'}`,
      );
    }
    this.client = client;
    this.timeoutsInARow = 0;
    return client;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (c) await closeQuietly(c, this.bus.kind);
  }
}

export class BusOpenError extends Error {
  override readonly name = 'BusOpenError';
}

/**
 * Polls the meters of one bus: one client, one request at a time, the inter-frame gap RTU
 * needs between requests. Each meter has its own schedule; one that does not answer costs the
 * bus at most its timeout per attempt and then backs off (exponentially, capped), so the live
 * meters on the bus keep their interval. The connection is opened when needed and reopened after
 * it fails (a USB adapter unplugged and back, a TCP link dropped), without a restart.
 */
export class BusPoller {
  private readonly io: BusClient;
  private readonly slots: Slot[];
  private stopped = true;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private readonly mono: () => number;
  private readonly now: () => number;
  polls = 0;
  pollErrors = 0;

  constructor(
    readonly bus: BusConfig,
    meters: MeterConfig[],
    private readonly opts: BusPollerOptions,
  ) {
    this.mono = opts.mono ?? (() => performance.now());
    this.now = opts.now ?? Date.now;
    this.io = new BusClient(bus);
    const start = this.mono();
    this.slots = meters.map((cfg) => ({
      cfg,
      decoder: createDecoder(cfg.definition),
      intervalMs: cfg.intervalMs ?? opts.defaultIntervalMs,
      state: { id: cfg.id, bus: bus.name, unitId: cfg.unitId, model: cfg.definition.id, state: 'new', lastReadAtMs: null, lastValues: null, lastError: null, failures: 0, nextDueMono: start },
    }));
  }

  get where(): string {
    return this.io.where;
  }

  meters(): MeterState[] {
    return this.slots.map((s) => ({ ...s.state }));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Lets the request in progress finish, then closes the connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    await this.io.close();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const next = this.slots.reduce((a, b) => (b.state.nextDueMono < a.state.nextDueMono ? b : a));
      const wait = next.state.nextDueMono - this.mono();
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = null;
        continue; // the earliest may have changed; stop may have been asked
      }
      await this.poll(next);
    }
  }

  private async poll(slot: Slot): Promise<void> {
    const { cfg, state } = slot;
    const due = state.nextDueMono;
    try {
      const values = await this.read(cfg, slot.decoder);
      this.polls++;
      const recovered = state.state === 'failing';
      Object.assign(state, { state: 'ok', lastReadAtMs: this.now(), lastValues: values, lastError: null, failures: 0 });
      // Keep the meter's rhythm; after a late read, the next is one interval from now.
      const now = this.mono();
      state.nextDueMono = due + slot.intervalMs > now ? due + slot.intervalMs : now + slot.intervalMs;
      if (recovered) this.opts.onRecovery(cfg);
      this.opts.onReading(cfg, values);
    } catch (e) {
      this.pollErrors++;
      const err = e instanceof MeterReadError ? e : new MeterReadError(String(e));
      const first = state.state !== 'failing';
      state.failures++;
      Object.assign(state, { state: 'failing', lastError: err.message });
      const backoff = Math.min(slot.intervalMs * 2 ** Math.min(state.failures - 1, 20), Math.max(slot.intervalMs, this.opts.maxBackoffMs ?? 300_000));
      state.nextDueMono = this.mono() + backoff;
      this.opts.onFailure(cfg, err, first);
    }
  }

  /** Reads one meter's registers over the bus (each block one request). */
  private async read(cfg: MeterConfig, decoder: MeterDecoder): Promise<DecodedReading> {
    try {
      return await decoder.read((fc, address, count) => this.io.read(cfg.unitId, cfg.timeoutMs, fc, address, count));
    } catch (e) {
      if (e instanceof BusOpenError) throw new MeterReadError(`meter ${cfg.id}: ${e.message}`);
      throw new MeterReadError(`meter ${cfg.id} (${cfg.definition.model}) at ${this.where} unit ${cfg.unitId} did not answer: ${describe(e)}; check the wiring, unit id, ${this.bus.kind === 'rtu' ? 'baud rate, parity' : 'host, port'} and model`);
    }
  }
}

/** Closes a client without waiting on the far end: a dead peer never answers a FIN. */
function closeQuietly(c: ModbusClient, kind: BusConfig['kind']): Promise<void> {
  return new Promise<void>((resolve) => {
    const safety = setTimeout(resolve, 1_000);
    const done = () => {
      clearTimeout(safety);
      resolve();
    };
    try {
      // TCP: destroy the socket (also one still connecting, so it cannot open later).
      if (kind === 'tcp' || !c.isOpen) c.destroy(done);
      else c.close(done);
    } catch {
      done();
    }
  });
}

function describe(e: unknown): string {
  const err = e as { message?: string; modbusCode?: number };
  return err.message ?? String(e);
}
