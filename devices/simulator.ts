// A simulated energy meter: serves any device definition over Modbus TCP, with power from a
// profile and energy counters that are the integral of that power over simulated time.
import { createServer } from 'node:net';
import { ServerTCP, type IServiceVector } from 'modbus-serial';
import { RANGE_TABLE, type AddressRange, type DeviceDefinition, type FunctionCode } from './definition.ts';
import { decodeBlocks, MAX_REGISTERS_PER_READ, planReads, type DecodedReading } from './decoder.ts';
import { createProfile, smoothNoise, type PowerProfile, type ProfileName } from './profiles.ts';
import { buildImage, type RegisterImage, type SimulatedState, type SimulatedSunSpec } from './register-image.ts';
import type { SunSpecLayout } from './sunspec.ts';

export { servedRanges, simulatedLayout, type SimulatedSunSpec } from './register-image.ts';

/** Modbus exception codes the simulator answers with. */
export const MODBUS_EXCEPTION = {
  illegalFunction: 0x01,
  illegalDataAddress: 0x02,
  illegalDataValue: 0x03,
} as const;

/** Thrown from the register vector; modbus-serial turns `modbusErrorCode` into an exception reply. */
export class ModbusException extends Error {
  override readonly name = 'ModbusException';
  constructor(
    readonly modbusErrorCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The meter's state at one instant, exact (float64, the meter's own units): power positive =
 * import; the phase current of a three-phase meter is a balanced load's.
 */
export interface MeterSnapshot extends SimulatedState {
  atMs: number;
}

export interface MeterSimulatorOptions {
  definition: DeviceDefinition;
  /** A named profile (built with seed/ratedW/timeZone) or any function of simulated ms → W. */
  profile: ProfileName | PowerProfile;
  seed?: number;
  ratedW?: number;
  /** Simulated ms epoch; default Date.now. Use createSimClock() to run faster than real time. */
  clock?: () => number;
  /** Ignored (0) when the definition lists importEnergy in notMeasured: such a device only exports. */
  initialImportKWh?: number;
  /** Ignored (0) when the definition lists exportEnergy in notMeasured: such a device only imports. */
  initialExportKWh?: number;
  /** Zone of the daily profile shape; default Asia/Bangkok. */
  timeZone?: string;
  /** A SunSpec definition's simulated chain: marker address, extra models, common-model strings. */
  sunspec?: SimulatedSunSpec;
}

export interface StartOptions {
  host?: string;
  /** 0 (default) = any free port. */
  port?: number;
  unitId?: number;
}

export interface ListenAddress {
  host: string;
  port: number;
}

// Integration sub-step: at speed 3600 one timer tick covers an hour, and a single rectangle
// over an hour of a changing profile would be badly off.
const STEP_MS = 10_000;
const MAX_STEPS = 20_000;
const MS_PER_HOUR = 3_600_000;
const TIMER_MS = 1000;
const NOMINAL_V = 230;
const NOMINAL_HZ = 50;

export class MeterSimulator {
  readonly definition: DeviceDefinition;
  private readonly power: PowerProfile;
  private readonly clock: () => number;
  private readonly seed: number;
  private lastMs: number;
  private importKWh: number;
  private exportKWh: number;
  private frozen: MeterSnapshot | undefined;
  private server: ServerTCP | undefined;
  private timer: NodeJS.Timeout | undefined;
  private listening: ListenAddress | undefined;
  private served = 1;
  /** Every register's word for a state: live values, SunSpec chain, identification registers. */
  private readonly image: RegisterImage;
  /** Addresses answered per function code (the definition's documented ranges), in order, adjacent ones merged. */
  private readonly spaces: Map<FunctionCode, AddressRange[]>;

  constructor(options: MeterSimulatorOptions) {
    this.definition = options.definition;
    this.seed = options.seed ?? 1;
    const profile =
      typeof options.profile === 'function'
        ? options.profile
        : createProfile(options.profile, { seed: this.seed, ratedW: options.ratedW, timeZone: options.timeZone });
    // A device that counts no import (a PV inverter) cannot import, and vice versa.
    const notMeasured = options.definition.notMeasured ?? [];
    const max = notMeasured.includes('importEnergy') ? 0 : options.definition.maxPowerW;
    const min = notMeasured.includes('exportEnergy') ? 0 : -options.definition.maxPowerW;
    // A meter cannot measure beyond its rating; a non-finite profile value counts as no flow.
    this.power = (t) => {
      const w = profile(t);
      return Number.isFinite(w) ? Math.min(max, Math.max(min, w)) + 0 : 0;
    };
    this.clock = options.clock ?? Date.now;
    this.importKWh = options.initialImportKWh ?? 0;
    this.exportKWh = options.initialExportKWh ?? 0;
    if (!(this.importKWh >= 0) || !(this.exportKWh >= 0)) {
      throw new RangeError('initial energy counters must be non-negative numbers');
    }
    if (notMeasured.includes('importEnergy')) this.importKWh = 0;
    if (notMeasured.includes('exportEnergy')) this.exportKWh = 0;
    this.lastMs = this.clock();

    this.image = buildImage(this.definition, options.sunspec);
    this.spaces = this.image.served;
  }

  /** The SunSpec chain this simulator serves (undefined for a definition without SunSpec points). */
  get sunspecLayout(): SunSpecLayout | undefined {
    return this.image.layout;
  }

  get paused(): boolean {
    return this.frozen !== undefined;
  }

  /** Where the server listens, once started. */
  get address(): ListenAddress | undefined {
    return this.listening;
  }

  get unitId(): number {
    return this.served;
  }

  /** Brings the counters up to simulated time `t` (midpoint rule over sub-steps). */
  private advance(t: number): void {
    if (this.frozen !== undefined || !(t > this.lastMs)) return;
    const span = t - this.lastMs;
    const steps = Math.min(MAX_STEPS, Math.ceil(span / STEP_MS));
    const h = span / steps;
    for (let i = 0; i < steps; i++) {
      const w = this.power(this.lastMs + (i + 0.5) * h);
      const kWh = (w * h) / MS_PER_HOUR / 1000;
      if (kWh > 0) this.importKWh += kWh;
      else if (kWh < 0) this.exportKWh -= kWh;
    }
    this.lastMs = t;
  }

  private stateAt(t: number): MeterSnapshot {
    const powerW = this.power(t);
    const voltageV = NOMINAL_V + 6 * (smoothNoise(this.seed ^ 0x1b873593, t, 60_000) - 0.5);
    const frequencyHz = NOMINAL_HZ + 0.1 * (smoothNoise(this.seed ^ 0x68e31da4, t, 20_000) - 0.5);
    return {
      atMs: t,
      powerW,
      importKWh: this.importKWh,
      exportKWh: this.exportKWh,
      voltageV,
      currentA: Math.abs(powerW) / (voltageV * this.definition.phases),
      frequencyHz,
    };
  }

  /** Current state (integrating up to now first); constant while paused. */
  snapshot(): MeterSnapshot {
    if (this.frozen !== undefined) return { ...this.frozen };
    const t = Math.max(this.lastMs, this.clock());
    this.advance(t);
    return this.stateAt(t);
  }

  /** Freezes the meter: registers and snapshot stay as they are now until resume(). */
  pause(): void {
    if (this.frozen !== undefined) return;
    this.frozen = this.snapshot();
  }

  /** Unfreezes; the paused span is skipped, not integrated, so counters do not jump. */
  resume(): void {
    if (this.frozen === undefined) return;
    this.frozen = undefined;
    this.lastMs = Math.max(this.lastMs, this.clock());
  }

  /** What the server answers for a read of `count` registers at `address` (throws ModbusException). */
  registers(functionCode: FunctionCode, address: number, count: number): number[] {
    return this.wordsAt(this.snapshot(), functionCode, address, count);
  }

  /** What a gateway decoding this meter's registers right now would get. */
  decoded(): DecodedReading {
    const snap = this.snapshot();
    const layout = this.image.layout;
    const blocks = planReads(this.definition, layout).map((b) => ({
      ...b,
      registers: this.wordsAt(snap, b.functionCode, b.address, b.count),
    }));
    return decodeBlocks(this.definition, blocks, layout);
  }

  private wordsAt(snap: MeterSnapshot, functionCode: FunctionCode, address: number, count: number): number[] {
    if (!Number.isInteger(count) || count < 1 || count > MAX_REGISTERS_PER_READ) {
      throw new ModbusException(MODBUS_EXCEPTION.illegalDataValue, `register count ${count} is outside 1..${MAX_REGISTERS_PER_READ}`);
    }
    const table = RANGE_TABLE[functionCode];
    const last = address + count - 1;
    // Like the real meter: the whole block must lie inside one documented range.
    const range = this.spaces.get(functionCode)?.find(([first, end]) => first <= address && address <= end);
    if (range === undefined) {
      throw new ModbusException(MODBUS_EXCEPTION.illegalDataAddress, `${this.definition.id} has no ${table} register at ${address} (${this.describeRanges(functionCode)})`);
    }
    if (last > range[1]) {
      throw new ModbusException(
        MODBUS_EXCEPTION.illegalDataAddress,
        `${this.definition.id}: ${count} ${table} registers from ${address} run past ${range[1]}, the end of the range ${range[0]}..${range[1]}`,
      );
    }
    // Documented but not simulated (reactive power, demand, settings …) reads as zero.
    const wordAt = this.image.words(snap);
    const words: number[] = [];
    for (let a = address; a <= last; a++) words.push(wordAt(functionCode, a));
    return words;
  }

  private describeRanges(functionCode: FunctionCode): string {
    const ranges = this.spaces.get(functionCode) ?? [];
    return ranges.length === 0 ? `it has no ${RANGE_TABLE[functionCode]} registers` : `it answers ${ranges.map(([a, b]) => `${a}..${b}`).join(', ')}`;
  }

  private serve(functionCode: FunctionCode, address: number, count: number, unitId: number): number[] {
    if (unitId !== this.served) {
      throw new ModbusException(MODBUS_EXCEPTION.illegalDataAddress, `unit ${unitId} is not served here (this meter is unit ${this.served})`);
    }
    return this.registers(functionCode, address, count);
  }

  /** Serves the registers over Modbus TCP; resolves with the address actually bound. */
  async start({ host = '127.0.0.1', port = 0, unitId = 1 }: StartOptions = {}): Promise<ListenAddress> {
    if (this.server !== undefined) throw new Error(`simulator already listening on ${this.listening?.host}:${this.listening?.port}`);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be 0..65535, got ${port}`);
    if (!Number.isInteger(unitId) || unitId < 0 || unitId > 255) throw new RangeError(`unit id must be 0..255, got ${unitId}`);
    this.served = unitId;

    // Each vector entry has the (addr[, length], unitID) arity that modbus-serial treats as synchronous.
    // Eastron meters have no coils or discrete inputs; this simulator also takes no writes (settings).
    const reject = (): never => {
      throw new ModbusException(MODBUS_EXCEPTION.illegalFunction, 'no coils, discrete inputs or writable registers');
    };
    const vector: IServiceVector = {
      getInputRegister: (addr: number, unitID: number) => this.serve(4, addr, 1, unitID)[0] ?? 0,
      getMultipleInputRegisters: (addr: number, length: number, unitID: number) => this.serve(4, addr, length, unitID),
      getHoldingRegister: (addr: number, unitID: number) => this.serve(3, addr, 1, unitID)[0] ?? 0,
      getMultipleHoldingRegisters: (addr: number, length: number, unitID: number) => this.serve(3, addr, length, unitID),
      // Without these, modbus-serial sends no reply at all and the client waits for its timeout.
      getCoil: (_addr: number, _unitID: number) => reject(),
      getDiscreteInput: (_addr: number, _unitID: number) => reject(),
      setRegister: (_addr: number, _value: number, _unitID: number) => reject(),
      setRegisterArray: (_addr: number, _value: number[], _unitID: number) => reject(),
      setCoil: (_addr: number, _value: boolean, _unitID: number) => reject(),
    };

    // ServerTCP treats port 0 as "use 502", so pick a free port ourselves; retry if it is taken
    // between probing and binding.
    for (let attempt = 1; ; attempt++) {
      const bindPort = port === 0 ? await findFreePort(host) : port;
      try {
        this.server = await listen(vector, host, bindPort);
        this.listening = { host, port: bindPort };
        break;
      } catch (err) {
        const inUse = err instanceof Error && 'code' in err && err.code === 'EADDRINUSE';
        if (port === 0 && inUse && attempt < 5) continue;
        throw new Error(`cannot listen on ${host}:${bindPort}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }

    this.timer = setInterval(() => this.snapshot(), TIMER_MS);
    // The listening socket keeps a process alive; the integration timer alone should not.
    this.timer.unref();
    return { ...this.listening };
  }

  /** Closes the server, its connections and the timer. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    const server = this.server;
    this.server = undefined;
    this.listening = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function listen(vector: IServiceVector, host: string, port: number): Promise<ServerTCP> {
  return new Promise((resolve, reject) => {
    // unitID 255 = answer every unit id; serve() checks the id so a wrong one gets an exception
    // reply instead of the silence ServerTCP gives for a mismatched unitID option.
    const server = new ServerTCP(vector, { host, port, unitID: 255 });
    // A client that resets its connection must not take the meter down.
    server.on('socketError', () => {});
    server.on('error', () => {});
    server.on('initialized', () => resolve(server));
    server.on('serverError', (err: Error | null) => {
      server.close(() => {});
      reject(err ?? new Error('server error'));
    });
  });
}

/** A free TCP port on `host` (ServerTCP takes 0 to mean 502, so the port is picked first). */
export function findFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen({ host, port: 0 }, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error(`could not find a free port on ${host}`))));
    });
  });
}
