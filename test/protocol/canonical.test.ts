import canonicalizeImport from 'canonicalize';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../protocol/canonical.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';

/** The reference implementation of RFC 8785 our faster canonicaliser must agree with. */
const reference = canonicalizeImport as unknown as (v: unknown) => string | undefined;

describe('canonicalJson (RFC 8785)', () => {
  it('matches the RFC 8785 example', () => {
    // RFC 8785 §3.2.2, the "sorting of properties" example input.
    const input = JSON.parse('{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}');
    const expected =
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}';
    expect(canonicalJson(input)).toBe(expected);
    expect(canonicalJson({ numbers: [333333333.33333329, 1e30, 4.5, 0.002, 1e-27], literals: [null, true, false] })).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}',
    );
  });

  it('agrees with the reference implementation on awkward values', () => {
    const values: unknown[] = [
      0, -0, 1, -1, 0.1, 1e21, 1e-7, 5e-324, Number.MAX_SAFE_INTEGER, -123.456,
      '', 'plain', 'quote " backslash \\ slash /', 'tab\tnewline\ncontrol\u0001\u001f del\u007f', 'é€😀', '\u2028\u2029',
      [], {}, [1, [2, [3, {}]]], { b: 1, a: 2, B: 3, _: 4, '': 5, '10': 6, '9': 7 },
      { skip: undefined, keep: null }, [undefined, null],
      { when: new Date(Date.UTC(2026, 10, 25, 12, 0, 0, 7)) },
      { nested: { z: [{ y: 'x', x: 'y' }], a: { c: true, b: false } } },
    ];
    for (const v of values) expect(canonicalJson(v), JSON.stringify(v)).toBe(reference(v));
  });

  it('agrees with the reference implementation on signed envelopes', () => {
    const f = new EnvelopeFactory('gw-canon');
    for (const n of [1, 2, 16]) {
      const env = JSON.parse(JSON.stringify(f.next('meter-canon', n)));
      expect(canonicalJson(env)).toBe(reference(env));
    }
  });

  it('leaves out members JSON cannot hold, as JSON.stringify does', () => {
    // (The reference package writes such a member as `"f":undefined`, which is not JSON.)
    expect(canonicalJson({ b: () => 1, a: undefined, c: Symbol('s'), d: [() => 1, undefined] })).toBe('{"d":[null,null]}');
  });

  it('refuses what RFC 8785 cannot represent', () => {
    for (const bad of [NaN, Infinity, -Infinity, 'lone \ud800 high', 'lone \udc00 low', 'ends high \ud83d', { ['k\ud800']: 1 }, 10n]) {
      expect(() => canonicalJson(bad), String(bad)).toThrow();
    }
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(() => canonicalJson(circular)).toThrow(/deeper than/);
    expect(() => canonicalJson(undefined)).toThrow(/cannot be canonicalised/);
  });
});
