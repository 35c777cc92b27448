import { getDefinition, isDefinitionPath, UnknownDeviceError } from '../../devices/catalog.ts';
import type { DecodedReading } from '../../devices/decoder.ts';
import type { BusConfig, MeterConfig, Parity } from '../../gateway/config.ts';
import { meterId, type MeterId } from '../../protocol/index.ts';
import { NodeSettingsError, numberIn, oneOf, requiredString } from './node-settings.ts';
import type { NodeDef } from './red.ts';

/** A gtx-meter node's bus and meter, in the gateway's own config types (so bus.ts polls it as is). */
export interface MeterSettings {
  bus: BusConfig;
  meter: MeterConfig;
  /** 0: read only when a message arrives. */
  intervalMs: number;
}

/** Host names and addresses: no spaces, no URL syntax, nothing a socket would misread. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:.]+\]?)$/;
/** A serial device's absolute path (/dev/ttyUSB0, /dev/serial/by-id/…) or a Windows COM port. */
const SERIAL = /^(?:\/[A-Za-z0-9._/:+-]{1,250}|COM[0-9]{1,3})$/;

export function readMeterSettings(def: NodeDef): MeterSettings {
  const id = requiredString(def, 'meter', 'the meter id enrolled with settlement, e.g. "home-1-main"');
  let meter: MeterId;
  try {
    meter = meterId(id);
  } catch (e) {
    throw new NodeSettingsError(`meter id: ${(e as Error).message}`);
  }
  const model = requiredString(def, 'model', 'a catalog model (e.g. "sdm120")');
  // Catalog ids and aliases only: a definition file path in a flow would read any file the runtime can.
  if (isDefinitionPath(model)) throw new NodeSettingsError(`model must be a catalog id such as "sdm120" (the editor lists them), not a file path: ${JSON.stringify(model)}`);
  let definition;
  try {
    definition = getDefinition(model);
  } catch (e) {
    throw new NodeSettingsError(e instanceof UnknownDeviceError ? e.message : `model: ${(e as Error).message}`);
  }
  const transport = oneOf(def, 'transport', ['tcp', 'rtu'] as const, 'tcp');
  let bus: BusConfig;
  if (transport === 'tcp') {
    const host = requiredString(def, 'host', 'the meter\'s (or its Modbus gateway\'s) host name or IP address');
    if (!HOST.test(host)) throw new NodeSettingsError(`host must be a host name or IP address, got ${JSON.stringify(host)}`);
    const bare = host.replace(/^\[|\]$/g, '');
    const port = numberIn(def, 'port', 1, 65535, 502);
    bus = { kind: 'tcp', name: `${bare.includes(':') ? `[${bare}]` : bare}:${port}`, host: bare, port, connectTimeoutMs: 3_000 };
  } else {
    const path = requiredString(def, 'serial', 'a serial port such as /dev/ttyUSB0');
    if (!SERIAL.test(path) || path.split('/').includes('..')) throw new NodeSettingsError(`serial port must look like /dev/ttyUSB0, got ${JSON.stringify(path)}`);
    bus = {
      kind: 'rtu',
      name: path,
      path,
      baudRate: numberIn(def, 'baud', 300, 921_600, 9600),
      parity: oneOf<Parity>(def, 'parity', ['none', 'even', 'odd'], 'none'),
      dataBits: numberIn(def, 'dataBits', 7, 8, 8) as 7 | 8,
      stopBits: numberIn(def, 'stopBits', 1, 2, 1) as 1 | 2,
    };
  }
  const intervalMs = Math.round(numberIn(def, 'interval', 0, 86_400, 10, false) * 1000);
  if (intervalMs > 0 && intervalMs < 100) throw new NodeSettingsError('interval must be 0 (read on input) or at least 0.1 s');
  return {
    bus,
    intervalMs,
    meter: {
      id: meter,
      definition,
      bus: bus.name,
      unitId: numberIn(def, 'unitId', 1, 247, 1),
      timeoutMs: Math.round(numberIn(def, 'timeout', 0.1, 30, 1, false) * 1000),
      ...(intervalMs > 0 ? { intervalMs } : {}),
      // Role and rating are enrollment facts (gtx gateway enroll); polling does not use them.
      role: 'bidirectional',
      ratedPowerW: definition.maxPowerW,
      energySource: null,
    },
  };
}

/** What gtx-meter emits and gtx-publish takes: the wire reading's values, before seq and signature. */
export interface MeterReading {
  meter: string;
  /** When the registers were read, ISO-8601 UTC. */
  ts: string;
  importWh: number;
  exportWh: number;
  powerW: number;
  voltageMilliV?: number;
  currentMilliA?: number;
  frequencyMilliHz?: number;
}

export function meterReading(meter: string, tsMs: number, v: DecodedReading): MeterReading {
  const r: MeterReading = { meter, ts: new Date(tsMs).toISOString(), importWh: v.importWh, exportWh: v.exportWh, powerW: v.powerW };
  // The phase 2/3 voltages stay out: the wire reading has no place for them.
  if (v.voltageMilliV !== undefined) r.voltageMilliV = v.voltageMilliV;
  if (v.currentMilliA !== undefined) r.currentMilliA = v.currentMilliA;
  if (v.frequencyMilliHz !== undefined) r.frequencyMilliHz = v.frequencyMilliHz;
  return r;
}

/** "1.23 kW, 230.1 V" for a node's status line. */
export function describePower(r: MeterReading): string {
  const p = Math.abs(r.powerW) >= 1000 ? `${(r.powerW / 1000).toFixed(2)} kW` : `${r.powerW} W`;
  return r.voltageMilliV === undefined ? p : `${p}, ${(r.voltageMilliV / 1000).toFixed(1)} V`;
}
