/** Words too common to say anything about what is recalled; BM25 would weigh them low anyway,
 * but a query of only these should find nothing rather than everything. */
const STOP = new Set(
  'a an and are as at be by do does did for from has have how i in is it its me my of on or our that the their them they this to was we were what when where which who why will with you your'.split(
    ' ',
  ),
);

/**
 * An FTS5 query for a natural-language recall: every meaningful word, quoted (so that no
 * FTS5 syntax can be injected) and OR-ed, so that an entry sharing some of the words (after
 * the porter stemmer: "prefers" finds "preferred") ranks by BM25. Undefined: nothing to match.
 */
export function ftsQuery(text: string): string | undefined {
  const words = (text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? []).filter((w) => !STOP.has(w));
  const unique = [...new Set(words)].slice(0, 64);
  return unique.length ? unique.map((w) => `"${w}"`).join(' OR ') : undefined;
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}
