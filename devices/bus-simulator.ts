import { ServerSerial, ServerTCP, type IServiceVector } from 'modbus-serial';
import { findFreePort, MODBUS_EXCEPTION, ModbusException, type MeterSimulator } from './simulator.ts';

/**
 * Several simulated meters on one bus, answering by unit id, as an RS-485 line does: over Modbus
 * TCP (an RS-485/TCP bridge) or Modbus RTU on a serial port (in tests, one end of a socat
 * pseudo-terminal pair, so the gateway's real serial code path is exercised). A unit can be
 * silenced: a meter that is off or disconnected sends nothing, and its poller only learns it
 * from its timeout.
 */
export interface SerialOptions {
  path: string;
  baudRate?: number;
  parity?: 'none' | 'even' | 'odd';
  dataBits?: 7 | 8;
  stopBits?: 1 | 2;
}

export class BusSimulator {
  private tcp: ServerTCP | undefined;
  private serial: ServerSerial | undefined;
  private readonly silent = new Set<number>();
  /** Requests answered per unit id. */
  readonly served = new Map<number, number>();

  constructor(readonly units: ReadonlyMap<number, MeterSimulator>) {}

  /** A unit that stops answering (true) or answers again (false). */
  silence(unitId: number, on = true): void {
    if (on) this.silent.add(unitId);
    else this.silent.delete(unitId);
  }

  private answer(fc: 3 | 4, address: number, count: number, unitId: number): Promise<number[]> | number[] {
    const meter = this.units.get(unitId);
    // No device at that address, or one switched off: silence on the line (no reply ever).
    if (!meter || this.silent.has(unitId)) return new Promise<number[]>(() => {});
    this.served.set(unitId, (this.served.get(unitId) ?? 0) + 1);
    return meter.registers(fc, address, count);
  }

  private vector(): IServiceVector {
    const reject = (): never => {
      throw new ModbusException(MODBUS_EXCEPTION.illegalFunction, 'no coils, discrete inputs or writable registers');
    };
    return {
      getInputRegister: (addr: number, unitID: number) => first(this.answer(4, addr, 1, unitID)),
      getMultipleInputRegisters: (addr: number, length: number, unitID: number) => this.answer(4, addr, length, unitID),
      getHoldingRegister: (addr: number, unitID: number) => first(this.answer(3, addr, 1, unitID)),
      getMultipleHoldingRegisters: (addr: number, length: number, unitID: number) => this.answer(3, addr, length, unitID),
      getCoil: (_addr: number, _unitID: number) => reject(),
      getDiscreteInput: (_addr: number, _unitID: number) => reject(),
      setRegister: (_addr: number, _value: number, _unitID: number) => reject(),
      setRegisterArray: (_addr: number, _value: number[], _unitID: number) => reject(),
      setCoil: (_addr: number, _value: boolean, _unitID: number) => reject(),
    };
  }

  /** Serves Modbus TCP on host:port (0 = a free port); resolves with the port. */
  async listenTcp(host = '127.0.0.1', port = 0): Promise<number> {
    const bindPort = port === 0 ? await findFreePort(host) : port;
    this.tcp = await new Promise<ServerTCP>((resolve, reject) => {
      const server = new ServerTCP(this.vector(), { host, port: bindPort, unitID: 255 });
      server.on('socketError', () => {});
      server.on('error', () => {});
      server.on('initialized', () => resolve(server));
      server.on('serverError', (err: Error | null) => reject(err ?? new Error('server error')));
    });
    return bindPort;
  }

  /** Serves Modbus RTU on a serial port; resolves once it is open. */
  async openSerial(o: SerialOptions): Promise<void> {
    this.serial = await new Promise<ServerSerial>((resolve, reject) => {
      const server: ServerSerial = new ServerSerial(this.vector(), {
        path: o.path,
        baudRate: o.baudRate ?? 9600,
        parity: o.parity ?? 'none',
        dataBits: o.dataBits ?? 8,
        stopBits: o.stopBits ?? 1,
        unitID: 255,
        openCallback: (err) => (err ? reject(err) : resolve(server)),
      });
      server.on('socketError', () => {});
      server.on('error', () => {});
    });
  }

  /** Closes the serial port (the device unplugged), keeping TCP. */
  async closeSerial(): Promise<void> {
    const s = this.serial;
    this.serial = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  async close(): Promise<void> {
    await this.closeSerial();
    const t = this.tcp;
    this.tcp = undefined;
    if (t) await new Promise<void>((resolve) => t.close(() => resolve()));
  }
}

function first(words: Promise<number[]> | number[]): Promise<number> | number {
  return Array.isArray(words) ? (words[0] ?? 0) : words.then((w) => w[0] ?? 0);
}
