import modbus from 'modbus-serial';
import { decodeRegisters, type DecodedReading } from '../devices/decoder.ts';
import type { MeterConfig } from './config.ts';

/** The connection part of a meter's configuration. */
export type TcpMeterConfig = Pick<MeterConfig, 'id' | 'definition' | 'host' | 'port' | 'unitId' | 'timeoutMs'>;

// CJS interop: under NodeNext the default import is module.exports; the class is its `default`.
const ModbusRTU = modbus.default;
type ModbusClient = InstanceType<typeof ModbusRTU>;

export class MeterReadError extends Error {
  override readonly name = 'MeterReadError';
}

/**
 * Reads one Modbus TCP meter: keeps its connection open between polls, reconnects after a
 * failure, and reads the definition's register blocks with one request per block.
 */
export class TcpMeterPoller {
  private client: ModbusClient | null = null;

  constructor(readonly cfg: TcpMeterConfig) {}

  get where(): string {
    return `modbus-tcp://${this.cfg.host}:${this.cfg.port} unit ${this.cfg.unitId}`;
  }

  async read(): Promise<DecodedReading> {
    const client = await this.connect();
    try {
      return await decodeRegisters(this.cfg.definition, async (fc, address, count) => {
        const res = fc === 4 ? await client.readInputRegisters(address, count) : await client.readHoldingRegisters(address, count);
        return res.data;
      });
    } catch (e) {
      await this.close();
      const msg = (e as Error).message ?? String(e);
      throw new MeterReadError(
        `meter ${this.cfg.id} (${this.cfg.definition.model}) at ${this.where} did not answer: ${msg}; check the host, port, unit id and model`,
      );
    }
  }

  private async connect(): Promise<ModbusClient> {
    if (this.client?.isOpen) return this.client;
    const client = new ModbusRTU();
    try {
      await client.connectTCP(this.cfg.host, { port: this.cfg.port });
    } catch (e) {
      throw new MeterReadError(
        `meter ${this.cfg.id}: cannot connect to ${this.where}: ${(e as Error).message}; is the meter (or its Modbus gateway) on the network?`,
      );
    }
    client.setID(this.cfg.unitId);
    client.setTimeout(this.cfg.timeoutMs);
    this.client = client;
    return client;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (c?.isOpen) await new Promise<void>((resolve) => c.close(() => resolve()));
  }
}
