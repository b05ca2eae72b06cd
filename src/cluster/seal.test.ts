import { describe, expect, it } from 'vitest';
import { createSealer } from './seal.ts';

describe('sealed envd tokens', () => {
  it('opens what it sealed, and nothing sealed under another secret or tampered with', () => {
    const a = createSealer('secret-a');
    const sealed = a.seal('token-1');
    expect(sealed).not.toContain('token-1');
    expect(a.seal('token-1')).not.toBe(sealed); // a fresh nonce each time
    expect(a.open(sealed)).toBe('token-1');
    expect(createSealer('secret-b').open(sealed)).toBeUndefined();
    const raw = Buffer.from(sealed.slice(3), 'base64url');
    raw[raw.length - 1]! ^= 1;
    expect(a.open(`v1.${raw.toString('base64url')}`)).toBeUndefined();
    expect(a.open('v1.short')).toBeUndefined();
    expect(a.open('plain')).toBeUndefined();
  });
});
