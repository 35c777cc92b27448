// How the device code reads registers, and how it tells a Modbus exception from a broken link.

/** Reads a register block from a device; sync or async so tests and pollers can share it. */
export type RegisterReader = (
  functionCode: 3 | 4,
  address: number,
  count: number,
) => readonly number[] | Promise<readonly number[]>;

/** Names of the Modbus exception codes a meter answers with, for messages. */
export const EXCEPTION_NAMES: Readonly<Record<number, string>> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  6: 'server device busy',
  11: 'gateway target device failed to respond',
};

/**
 * The Modbus exception code an error carries, or undefined when the error is something else
 * (timeout, closed connection). modbus-serial's client sets `modbusCode`; the simulator's
 * ModbusException carries `modbusErrorCode`.
 */
export function modbusExceptionCode(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  for (const key of ['modbusCode', 'modbusErrorCode'] as const) {
    const code: unknown = (err as Record<string, unknown>)[key];
    if (typeof code === 'number' && Number.isInteger(code) && code > 0) return code;
  }
  return undefined;
}

/** "exception 2 (illegal data address)". */
export function describeException(code: number): string {
  const name = EXCEPTION_NAMES[code];
  return name === undefined ? `exception ${code}` : `exception ${code} (${name})`;
}
