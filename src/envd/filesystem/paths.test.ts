import { describe, expect, it } from 'vitest';
import { resolvePath } from './paths.ts';

describe('resolvePath (envd permissions/path.go)', () => {
  const home = '/home/user';
  it('makes every path absolute for the user', () => {
    expect(resolvePath('', home)).toBe('/home/user');
    expect(resolvePath('~', home)).toBe('/home/user');
    expect(resolvePath('~/x/y', home)).toBe('/home/user/x/y');
    expect(resolvePath('a/b.txt', home)).toBe('/home/user/a/b.txt');
    expect(resolvePath('/etc/hosts', home)).toBe('/etc/hosts');
    expect(resolvePath('/tmp/dir/', home)).toBe('/tmp/dir');
    expect(resolvePath('/', home)).toBe('/');
    expect(resolvePath('//a//b', home)).toBe('/a/b');
  });

  it('resolves .. lexically and never above /', () => {
    expect(resolvePath('../../etc/passwd', home)).toBe('/etc/passwd');
    expect(resolvePath('../../../../..', home)).toBe('/');
    expect(resolvePath('/a/b/../../../c', home)).toBe('/c');
    expect(resolvePath('~/../other', home)).toBe('/home/other');
  });

  it('rejects NUL, ~user and absurd lengths', () => {
    const bad = (p: string) => () => resolvePath(p, home);
    expect(bad('a\0b')).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
    expect(bad('~root/x')).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
    expect(bad('/' + 'x'.repeat(5000))).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
    expect(bad('x/'.repeat(2047))).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
  });
});
