/** Words too common to say anything about what is recalled; BM25 would weigh them low anyway,
 * but a query of only these should find nothing rather than everything. */
const STOP = new Set(
  'a an and are as at be by do does did for from has have how i in is it its me my of on or our that the their them they this to was we were what when where which who why will with you your'.split(
    ' ',
  ),
);

/**
 * For a natural-language recall: every meaningful word, quoted (so that no FTS5 syntax can be
 * injected), to be OR-ed, so that an entry sharing some of the words (after the porter
 * stemmer: "prefers" finds "preferred") ranks by BM25. At most 64.
 */
export function ftsTerms(text: string): string[] {
  const words = (text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? []).filter((w) => !STOP.has(w));
  return [...new Set(words)].slice(0, 64).map((w) => `"${w}"`);
}

export function orQuery(terms: string[]): string {
  return terms.join(' OR ');
}
