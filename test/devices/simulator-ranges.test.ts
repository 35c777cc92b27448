// The simulator answers like the real Eastron meter: every address of the documented register
// ranges, and refusals only outside them. Real parts: a loopback TCP port, modbus-serial as the
// client, and Debian's mbpoll (a libmodbus tool) when it is installed.
import { execFile } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import { decodeRegisters } from '../../devices/decoder.ts';
import { registerWords, validateDefinition, type DeviceDefinition } from '../../devices/definition.ts';
import type { MeterSimulator } from '../../devices/simulator.ts';
import { modbusError, useModbus, type ModbusClient } from '../support/modbus.ts';
import { findBinary, requireOrSkip } from '../support/services.ts';

const modbus = useModbus();
type Client = ModbusClient;

const NOON_BANGKOK = Date.UTC(2025, 5, 15, 5, 0);

/** A paused meter with non-zero values everywhere the definition maps something. */
async function serve(definition: DeviceDefinition): Promise<{ sim: MeterSimulator; port: number }> {
  const { sim, port } = await modbus.serve({ definition, profile: 'prosumer', seed: 5, clock: () => NOON_BANGKOK, initialImportKWh: 4321.5, initialExportKWh: 765.25 });
  // Frozen, so reads made one after another see one instant.
  sim.pause();
  return { sim, port };
}

const connect = (port: number): Promise<Client> => modbus.connect(port);

/** Reads [first, last] in blocks of at most 125 registers, as a polling tool does. */
async function sweep(read: (address: number, count: number) => Promise<number[]>, first: number, last: number): Promise<number[]> {
  const words: number[] = [];
  for (let a = first; a <= last; a += 125) words.push(...(await read(a, Math.min(125, last - a + 1))));
  return words;
}

function inputRange(def: DeviceDefinition): [number, number] {
  const input = def.ranges?.input;
  if (input?.length !== 1) throw new Error(`${def.id}: expected one documented input range`);
  return input[0]!;
}

/** Input addresses a register of the definition covers. */
function mapped(def: DeviceDefinition): Set<number> {
  const out = new Set<number>();
  for (const r of def.registers) if (r.functionCode === 4 && r.address !== undefined) for (let i = 0; i < registerWords(r); i++) out.add(r.address + i);
  return out;
}

describe('documented register ranges over Modbus TCP (modbus-serial)', () => {
  it('the catalog documents the Eastron ranges: SDM120 input 30001-30346, SDM630 input 30001-30382', () => {
    expect(getDefinition('sdm120').ranges).toMatchObject({ input: [[0, 0x159]], source: expect.stringContaining('SDM120') });
    expect(getDefinition('sdm630').ranges).toMatchObject({ input: [[0, 0x17d]], source: expect.stringContaining('SDM630') });
    for (const def of [getDefinition('sdm120'), getDefinition('sdm630')]) expect(def.ranges?.holding?.[0]).toEqual([0, 87]);
  });

  for (const model of ['sdm120', 'sdm630'] as const) {
    it(`${model}: a block read across the whole input range succeeds; mapped registers decode, the rest is zero`, async () => {
      const def = getDefinition(model);
      const { sim, port } = await serve(def);
      const client = await connect(port);
      const [first, last] = inputRange(def);
      const words = await sweep(async (a, n) => (await client.readInputRegisters(a, n)).data, first, last);
      expect(words).toHaveLength(last - first + 1);

      // The known registers, taken from the sweep, decode to what the meter shows.
      const fromSweep = await decodeRegisters(def, async (fc, address, count) => {
        expect(fc).toBe(4);
        return words.slice(address - first, address - first + count);
      });
      expect(fromSweep).toEqual(sim.decoded());
      expect(fromSweep.importWh).toBe(Math.round(Math.fround(4321.5) * 1000));

      const used = mapped(def);
      const others = words.filter((_, i) => !used.has(first + i));
      expect(others).toHaveLength(words.length - used.size);
      expect(others.every((w) => w === 0)).toBe(true);
      expect(words.some((w) => w !== 0)).toBe(true);
    });

    it(`${model}: a read just past the end of the input range, or across it, is refused with exception 2`, async () => {
      const def = getDefinition(model);
      const { port } = await serve(def);
      const client = await connect(port);
      const [, last] = inputRange(def);
      expect((await client.readInputRegisters(last - 1, 2)).data).toEqual([0, 0]); // the last documented float
      expect(await modbusError(client.readInputRegisters(last + 1, 1))).toBe(2);
      expect(await modbusError(client.readInputRegisters(last - 1, 3))).toBe(2); // starts inside, crosses out
      expect(await modbusError(client.readInputRegisters(last - 124, 126))).toBe(3); // over the 125-register limit
      expect(await modbusError(client.readInputRegisters(0xfff0, 2))).toBe(2);
      // Still serving after the refusals.
      expect((await client.readInputRegisters(0x48, 4)).data).toHaveLength(4);
    });
  }

  it('serves the documented holding ranges (settings and serial number as zeros, the meter code) and refuses what lies between them', async () => {
    const def = getDefinition('sdm630');
    const { port } = await serve(def);
    const client = await connect(port);
    expect((await client.readHoldingRegisters(0, 88)).data).toEqual(new Array<number>(88).fill(0));
    expect((await client.readHoldingRegisters(0xfc00, 2)).data).toEqual([0, 0]);
    // Serial number, meter code (0x0070 identifies an SDM630) and software version.
    expect((await client.readHoldingRegisters(0xfc00, 4)).data).toEqual([0, 0, 0x0070, 0]);
    expect(await modbusError(client.readHoldingRegisters(87, 2))).toBe(2);
    expect(await modbusError(client.readHoldingRegisters(88, 1))).toBe(2);
    expect(await modbusError(client.readHoldingRegisters(0xfc00, 5))).toBe(2);
  });

  it('answers function codes the meter does not have with exception 1 (illegal function)', async () => {
    const { port } = await serve(getDefinition('sdm120'));
    const client = await connect(port);
    expect(await modbusError(client.readCoils(0, 8))).toBe(1);
    expect(await modbusError(client.readDiscreteInputs(0, 8))).toBe(1);
    expect(await modbusError(client.writeCoil(0, true))).toBe(1);
    expect(await modbusError(client.writeRegister(0x0c, 1))).toBe(1);
    expect(await modbusError(client.writeRegisters(0x0c, [0, 1]))).toBe(1);
    expect((await client.readInputRegisters(0, 2)).data).toHaveLength(2);
  });

  it('without documented ranges serves only the mapped registers, as before', async () => {
    const def = validateDefinition(
      {
        id: 'no-ranges',
        vendor: 'Test',
        model: 'T',
        description: 'registers only',
        phases: 1,
        maxPowerW: 5000,
        registers: [
          { quantity: 'importEnergy', address: 10, functionCode: 4, dataType: 'float32', wordOrder: 'big', scale: 1, unit: 'kWh' },
          { quantity: 'exportEnergy', address: 12, functionCode: 4, dataType: 'float32', wordOrder: 'big', scale: 1, unit: 'kWh' },
          { quantity: 'power', address: 20, functionCode: 4, dataType: 'float32', wordOrder: 'big', scale: 1, unit: 'W' },
        ],
      },
      'inline',
    );
    const { port } = await serve(def);
    const client = await connect(port);
    expect((await client.readInputRegisters(10, 4)).data).toHaveLength(4); // two adjacent registers, one block
    expect(await modbusError(client.readInputRegisters(10, 5))).toBe(2);
    expect(await modbusError(client.readInputRegisters(0, 2))).toBe(2);
    expect(await modbusError(client.readHoldingRegisters(10, 2))).toBe(2);
  });
});

const mbpoll = findBinary('mbpoll');
const skipMbpoll = requireOrSkip('mbpoll block reads', mbpoll !== undefined, 'mbpoll is not installed (Debian package mbpoll)');

/** One mbpoll read of `count` input registers from 0-based `address`, as 16-bit hex words. */
function mbpollRead(port: number, address: number, count: number): Promise<{ code: number; words: number[]; stderr: string }> {
  const args = ['-m', 'tcp', '-p', String(port), '-a', '1', '-0', '-r', String(address), '-c', String(count), '-t', '3:hex', '-1', '-o', '2', '127.0.0.1'];
  return new Promise((resolve) => {
    // Asynchronous: the simulator answering it runs in this process.
    execFile(mbpoll!, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const words = [...stdout.matchAll(/^\[(\d+)\]:\s+0x([0-9A-F]{4})$/gm)].map((m) => {
        expect(Number(m[1])).toBeGreaterThanOrEqual(address);
        return parseInt(m[2]!, 16);
      });
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, words, stderr });
    });
  });
}

describe.skipIf(skipMbpoll)('documented register ranges read by mbpoll (libmodbus)', () => {
  for (const model of ['sdm120', 'sdm630'] as const) {
    it(`${model}: mbpoll reads the whole input range in blocks, word for word what modbus-serial reads, and gets "Illegal data address" past its end`, async () => {
      const def = getDefinition(model);
      const { port } = await serve(def);
      const client = await connect(port);
      const [first, last] = inputRange(def);
      const expected = await sweep(async (a, n) => (await client.readInputRegisters(a, n)).data, first, last);
      const got = await sweep(async (a, n) => {
        const r = await mbpollRead(port, a, n);
        expect(r.code, r.stderr).toBe(0);
        expect(r.words).toHaveLength(n);
        return r.words;
      }, first, last);
      expect(got).toEqual(expected);
      expect(got.some((w) => w !== 0)).toBe(true);

      const past = await mbpollRead(port, last - 1, 4);
      expect(past.code).not.toBe(0);
      expect(past.stderr).toMatch(/Illegal data address/);
    });
  }
});
