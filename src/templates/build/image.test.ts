import { describe, expect, it } from 'vitest';
import { parseImageRef, registryCredentials } from './image.ts';

describe('image references (Docker rules)', () => {
  it('names the registry, the repository and the tag or digest', () => {
    expect(parseImageRef('python:3.12')).toEqual({
      registry: 'docker.io',
      repository: 'library/python',
      reference: ':3.12',
    });
    expect(parseImageRef('team/app')).toEqual({
      registry: 'docker.io',
      repository: 'team/app',
      reference: ':latest',
    });
    expect(parseImageRef('127.0.0.1:5000/team/app:v1')).toEqual({
      registry: '127.0.0.1:5000',
      repository: 'team/app',
      reference: ':v1',
    });
    expect(parseImageRef('localhost/app')).toEqual({
      registry: 'localhost',
      repository: 'app',
      reference: ':latest',
    });
    const digest = `@sha256:${'a'.repeat(64)}`;
    expect(parseImageRef(`ghcr.io/o/r${digest}`)).toEqual({
      registry: 'ghcr.io',
      repository: 'o/r',
      reference: digest,
    });
  });

  it('refuses what is no reference (shell syntax, schemes, upper case, bad digests)', () => {
    for (const bad of [
      '',
      'a b',
      'docker://x',
      'App',
      'x:tag;rm',
      'x@sha256:12',
      '-x',
      'x/../y',
      'cove+archive:ab',
    ])
      expect(() => parseImageRef(bad), bad).toThrow(/not an image reference/);
  });

  it('turns the SDK registry configs into a user and password, and says what AWS needs', () => {
    expect(registryCredentials(undefined)).toBeUndefined();
    expect(registryCredentials({ type: 'registry', username: 'u', password: 'p' })).toEqual({
      username: 'u',
      password: 'p',
    });
    expect(registryCredentials({ type: 'gcp', serviceAccountJson: '{}' })).toEqual({
      username: '_json_key',
      password: '{}',
    });
    expect(() => registryCredentials({ type: 'aws', awsAccessKeyId: 'a' })).toThrow(/get-login-password/);
    expect(() => registryCredentials({ type: 'other' })).toThrow(/want type registry/);
  });
});
