import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../core/log.ts';
import { parseServicesConfig } from '../config.ts';
import { createServices } from '../services.ts';
import { createMemoryClient, MemoryError } from './client.ts';
import { scratchDir } from '../../../test/scratch.ts';

describe('memory client', () => {
  it('remembers, recalls, forgets against the real routes (Cove port side)', async () => {
    const services = createServices({
      home: scratchDir('cove-svc-'),
      config: parseServicesConfig({}),
      log: createLogger('silent'),
      sandboxAlive: () => false,
      keyAlive: () => true,
      readSandboxFile: () => Promise.reject(new Error('no sandbox')),
    });
    const app = new Hono<{ Variables: { keyId: string } }>();
    app.use('*', async (c, next) => {
      c.set('keyId', 'key_1');
      await next();
    });
    app.route('/', services.routes);
    const client = createMemoryClient({
      baseUrl: 'http://cove',
      token: 'unused',
      fetch: (url, init) => Promise.resolve(app.request(url as string, init)),
    });
    const notes = client.namespace('notes');
    const e = await notes.remember('Backups run at 02:00 every night', { metadata: { by: 'ops' } });
    expect((await notes.recall('when do backups run'))[0]).toMatchObject({
      id: e.id,
      metadata: { by: 'ops' },
    });
    const doc = await notes.ingest({ text: 'Para one.\n\nPara two about llamas.', title: 'zoo' });
    expect((await notes.recall('llama'))[0]?.citation?.documentId).toBe(doc.id);
    await notes.forget(e.id);
    await expect(notes.forget(e.id)).rejects.toBeInstanceOf(MemoryError);
    expect(await notes.clear()).toBe(1);
    // Nothing configured: clear answers, in the OpenAI error shape.
    const search = await app.request('/v1/search?q=x');
    expect(search.status).toBe(503);
    expect(await search.json()).toMatchObject({ error: { message: /no search provider configured/ } });
    const chat = await app.request('/v1/chat/completions', { method: 'POST', body: '{"model":"m"}' });
    expect(await chat.json()).toMatchObject({ error: { message: /no model provider configured/ } });
    await services.close();
  });
});
