import { describe, expect, it } from 'vitest';
import { mergePrometheus, sumUsage } from './merge.ts';

describe('what a replica merges from its nodes', () => {
  it('Prometheus texts: one HELP and TYPE per family, every sample labelled with its node', () => {
    const node = (n: number) =>
      [
        '# HELP cove_sandboxes Sandboxes by state.',
        '# TYPE cove_sandboxes gauge',
        `cove_sandboxes{state="running"} ${n}`,
        '# HELP cove_create_seconds Create time.',
        '# TYPE cove_create_seconds histogram',
        `cove_create_seconds_bucket{le="0.1"} ${n}`,
        `cove_create_seconds_sum ${n / 10}`,
        `cove_create_seconds_count ${n}`,
        '# TYPE up_total counter',
        `up_total{} ${n}`,
        '',
      ].join('\n');
    expect(
      mergePrometheus([
        { node: 'n0', text: node(1) },
        { node: 'n1', text: node(2) },
      ]),
    ).toBe(
      [
        '# HELP cove_sandboxes Sandboxes by state.',
        '# TYPE cove_sandboxes gauge',
        'cove_sandboxes{node="n0",state="running"} 1',
        'cove_sandboxes{node="n1",state="running"} 2',
        '# HELP cove_create_seconds Create time.',
        '# TYPE cove_create_seconds histogram',
        'cove_create_seconds_bucket{node="n0",le="0.1"} 1',
        'cove_create_seconds_sum{node="n0"} 0.1',
        'cove_create_seconds_count{node="n0"} 1',
        'cove_create_seconds_bucket{node="n1",le="0.1"} 2',
        'cove_create_seconds_sum{node="n1"} 0.2',
        'cove_create_seconds_count{node="n1"} 2',
        '# TYPE up_total counter',
        'up_total{node="n0"} 1',
        'up_total{node="n1"} 2',
        '',
      ].join('\n'),
    );
  });

  it('usage summaries: counts added, per model too', () => {
    const one = { model: 'm', requests: 1, inputTokens: 2, outputTokens: 3 };
    expect(
      sumUsage([
        { requests: 1, inputTokens: 2, outputTokens: 3, totalTokens: 5, byModel: [one] },
        {
          requests: 2,
          inputTokens: 4,
          outputTokens: 6,
          totalTokens: 10,
          byModel: [one, { model: 'k', requests: 1, inputTokens: 2, outputTokens: 3 }],
        },
      ]),
    ).toEqual({
      requests: 3,
      inputTokens: 6,
      outputTokens: 9,
      totalTokens: 15,
      byModel: [
        { model: 'm', requests: 2, inputTokens: 4, outputTokens: 6 },
        { model: 'k', requests: 1, inputTokens: 2, outputTokens: 3 },
      ],
    });
  });
});
