/** A markdown table, padded so that it also reads as plain text: the first `leftColumns`
 * columns are left-aligned (names), the rest right-aligned (figures). */
export function markdownTable(head: string[], body: string[][], leftColumns: number): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) =>
    '| ' +
    cells
      .map((c, i) => (i < leftColumns ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join(' | ') +
    ' |';
  const rule =
    '| ' +
    // A one-character column still needs a dash before its colon to be a markdown rule.
    widths
      .map((w, i) => (i < leftColumns ? '-'.repeat(w) : '-'.repeat(Math.max(w - 1, 1)) + ':'))
      .join(' | ') +
    ' |';
  return [line(head), rule, ...body.map(line)].join('\n');
}

/** Milliseconds with two decimals below 10, one above. */
export function ms(x: number): string {
  if (!Number.isFinite(x)) return '—';
  return x < 10 ? x.toFixed(2) : x.toFixed(1);
}

/** A Cove/peer ratio cell, empty when there is no peer figure. */
export function ratioCell(x: number | undefined): string {
  return x === undefined ? '' : `${x.toFixed(2)}×`;
}
