import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove, templateBuilt } from '../helpers.ts';

const loadCi = () => import('@e2b/code-interpreter');
type CiSandbox = InstanceType<Awaited<ReturnType<typeof loadCi>>['Sandbox']>;

const TEMPLATE = 'code-interpreter-v1';
const built = await templateBuilt(TEMPLATE);

// A chart is one result's `chart`: typed loosely here, as the SDK's own tests read it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Chart = Record<string, any>;

/**
 * Chart data from matplotlib figures (`result.chart`, spec 5.3), for the chart kinds the
 * SDK types: the same programs as the SDK's own chart tests, through the real SDK.
 */
describe.skipIf(!canRunSandboxes || !built)(`charts on ${TEMPLATE}`, () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let sandbox: CiSandbox;

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    sandbox = await (await loadCi()).Sandbox.create(TEMPLATE);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  const chartOf = async (code: string): Promise<Chart> => {
    const ex = await sandbox.runCode(
      `import matplotlib.pyplot as plt\nimport numpy as np\n${code}\nplt.show()`,
    );
    expect(ex.error).toBeUndefined();
    const chart = ex.results[0]?.chart as Chart | undefined;
    expect(ex.results[0]?.png).toBeDefined(); // the picture comes with its data
    expect(chart).toBeDefined();
    return chart ?? {};
  };

  it('reads a bar chart: labels, values and groups', async () => {
    const chart = await chartOf(
      "plt.bar(['Author A', 'Author B', 'Author C'], [100, 200, 300], label='Books Sold')\n" +
        "plt.xlabel('Authors'); plt.ylabel('Books (count)'); plt.title('Book Sales')",
    );
    expect(chart).toMatchObject({ type: 'bar', title: 'Book Sales', x_label: 'Authors', x_unit: null });
    expect(chart.y_unit).toBe('count');
    expect(chart.elements).toEqual([
      { label: 'Author A', value: 100, group: 'Books Sold' },
      { label: 'Author B', value: 200, group: 'Books Sold' },
      { label: 'Author C', value: 300, group: 'Books Sold' },
    ]);
  });

  it('reads a line chart over dates: points, scales, ticks and units', async () => {
    const chart = await chartOf(
      'import datetime\n' +
        'days = [datetime.date(2023, 9, 1) + datetime.timedelta(days=i) for i in range(10)]\n' +
        "plt.plot(days, np.arange(10) ** 2, label='squares')\n" +
        "plt.xlabel('Time (s)'); plt.ylabel('Amplitude (Hz)'); plt.title('Squares')",
    );
    expect(chart).toMatchObject({ type: 'line', x_scale: 'datetime', y_scale: 'linear', x_unit: 's' });
    expect(chart.y_unit).toBe('Hz');
    const [line] = chart.elements as Array<{ label: string; points: [string, number][] }>;
    expect(line?.label).toBe('squares');
    expect(line?.points).toHaveLength(10);
    expect(new Date(line?.points[1]?.[0] ?? '')).toEqual(new Date('2023-09-02T00:00:00Z'));
    expect(line?.points[3]?.[1]).toBe(9);
    expect((chart.x_ticks as unknown[]).every((t) => typeof t === 'string')).toBe(true);
    expect((chart.y_tick_labels as unknown[]).every((t) => typeof t === 'string')).toBe(true);
  });

  it('reads a scatter chart and a log scale', async () => {
    const chart = await chartOf(
      "plt.scatter([1, 2, 3], [10, 100, 1000], label='Dataset 1')\nplt.yscale('log')\nplt.xlabel('A')",
    );
    expect(chart).toMatchObject({
      type: 'scatter',
      title: null,
      x_label: 'A',
      y_label: null,
      y_scale: 'log',
    });
    expect(chart.elements).toEqual([
      {
        label: 'Dataset 1',
        points: [
          [1, 10],
          [2, 100],
          [3, 1000],
        ],
      },
    ]);
  });

  it('reads a pie chart: angles in degrees', async () => {
    const chart = await chartOf(
      "fig, ax = plt.subplots()\nax.pie([90, 10], labels=['No', 'Yes'], startangle=90)\nplt.title('Pie')",
    );
    expect(chart).toEqual({
      type: 'pie',
      title: 'Pie',
      elements: [
        { label: 'No', angle: 324, radius: 1 },
        { label: 'Yes', angle: 36, radius: 1 },
      ],
    });
  });

  it('reads a box plot: quartiles, whiskers and outliers', async () => {
    const chart = await chartOf(
      "data = {'Class A': [85, 90, 78, 92, 88], 'Class B': [95, 89, 76, 91, 84, 87]}\n" +
        "fig, ax = plt.subplots()\nax.boxplot(data.values(), labels=data.keys(), patch_artist=True)\nax.set_title('Scores')",
    );
    expect(chart).toMatchObject({ type: 'box_and_whisker', title: 'Scores' });
    expect(chart.elements).toEqual([
      {
        label: 'Class A',
        min: 78,
        first_quartile: 85,
        median: 88,
        third_quartile: 90,
        max: 92,
        outliers: [],
      },
      {
        label: 'Class B',
        min: 84,
        first_quartile: 84.75,
        median: 88,
        third_quartile: 90.5,
        max: 95,
        outliers: [76],
      },
    ]);
  });

  it('reads several axes as a superchart, and what it cannot read as unknown', async () => {
    const chart = await chartOf(
      "fig, axs = plt.subplots(1, 2)\nfig.suptitle('Both')\naxs[0].plot([1, 2], [3, 4]); axs[0].set_title('Line')\n" +
        "axs[1].scatter([1], [2]); axs[1].set_title('Dots')",
    );
    expect(chart).toMatchObject({ type: 'superchart', title: 'Both' });
    expect((chart.elements as Chart[]).map((c): unknown[] => [c.type, c.title])).toEqual([
      ['line', 'Line'],
      ['scatter', 'Dots'],
    ]);
    const unknown = await chartOf(
      "fig, ax = plt.subplots()\nax.add_artist(plt.Circle((0, 0), 1, fill=False))\nplt.title('Circles')",
    );
    expect(unknown).toEqual({ type: 'unknown', title: 'Circles', elements: [] });
  });
});
