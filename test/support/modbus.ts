import modbusSerial from 'modbus-serial';
import { afterEach } from 'vitest';
import { MeterSimulator, type MeterSimulatorOptions } from '../../devices/simulator.ts';

/**
 * Simulated meters on real loopback TCP ports and modbus-serial clients for them, closed after
 * each test of the file that calls useModbus() (clients first: a client whose server vanished
 * never calls its close callback).
 */
const ModbusRTU = modbusSerial.default;
export type ModbusClient = InstanceType<typeof ModbusRTU>;

export function useModbus(): {
  serve(options: MeterSimulatorOptions, unitId?: number): Promise<{ sim: MeterSimulator; port: number; host: string }>;
  connect(port: number, unitId?: number): Promise<ModbusClient>;
} {
  const running: MeterSimulator[] = [];
  const clients: ModbusClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) if (c.isOpen) await new Promise<void>((r) => c.close(() => r()));
    for (const s of running.splice(0)) await s.stop();
  });
  return {
    async serve(options, unitId = 1) {
      const sim = new MeterSimulator(options);
      running.push(sim);
      const address = await sim.start({ unitId });
      return { sim, ...address };
    },
    async connect(port, unitId = 1) {
      const client = new ModbusRTU();
      clients.push(client);
      await client.connectTCP('127.0.0.1', { port });
      client.setID(unitId);
      client.setTimeout(2000);
      return client;
    },
  };
}

/** The Modbus exception code a request failed with (-1: failed otherwise), or undefined if it succeeded. */
export async function modbusError(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    return typeof err === 'object' && err !== null && 'modbusCode' in err && typeof err.modbusCode === 'number' ? err.modbusCode : -1;
  }
  return undefined;
}
