import type { UsageSummary } from '../services/usage.ts';

/**
 * Every node's Prometheus text (their `/metrics`) as one exposition: each family's HELP and
 * TYPE once, then its samples from every node, each labelled `node="<name>"` so that a
 * scraper of a replica tells the nodes apart (nodes admit only replicas: they are not scraped
 * themselves). Node names are `[a-z0-9.-]`: nothing to escape in the label.
 */
export function mergePrometheus(parts: ReadonlyArray<{ node: string; text: string }>): string {
  const families = new Map<string, { meta: string[]; samples: string[] }>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { meta: [], samples: [] }));
    return f;
  };
  for (const { node, text } of parts) {
    let current: string | undefined;
    for (const line of text.split('\n')) {
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        current = meta[2]!;
        const f = family(current);
        if (!f.meta.some((m) => m.startsWith(`# ${meta[1]} `))) f.meta.push(line);
        continue;
      }
      const sample = /^([a-zA-Z_:][\w:]*)(\{)?/.exec(line);
      if (!sample) continue; // a blank line or a comment
      const name = sample[1]!;
      const labelled = sample[2]
        ? `${name}{node="${node}"${line[name.length + 1] === '}' ? '' : ','}${line.slice(name.length + 1)}`
        : `${name}{node="${node}"}${line.slice(name.length)}`;
      // Histogram and summary samples (_bucket, _sum, _count) belong to the family above them.
      family(current !== undefined && name.startsWith(current) ? current : name).samples.push(labelled);
    }
  }
  return [...families.values()].flatMap((f) => [...f.meta, ...f.samples]).join('\n') + '\n';
}

/** Usage summaries (src/services/usage.ts) of several nodes as one: counts added, per model too. */
export function sumUsage(parts: readonly UsageSummary[]): UsageSummary {
  const byModel = new Map<string, UsageSummary['byModel'][number]>();
  for (const p of parts)
    for (const m of p.byModel) {
      const t = byModel.get(m.model) ?? { model: m.model, requests: 0, inputTokens: 0, outputTokens: 0 };
      t.requests += m.requests;
      t.inputTokens += m.inputTokens;
      t.outputTokens += m.outputTokens;
      byModel.set(m.model, t);
    }
  const sum = (f: (p: UsageSummary) => number) => parts.reduce((n, p) => n + f(p), 0);
  return {
    requests: sum((p) => p.requests),
    inputTokens: sum((p) => p.inputTokens),
    outputTokens: sum((p) => p.outputTokens),
    totalTokens: sum((p) => p.totalTokens),
    byModel: [...byModel.values()],
  };
}
