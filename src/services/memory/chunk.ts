/** A piece of a document, with where it sits in the original text (for citations). */
export interface Chunk {
  text: string;
  start: number;
  end: number;
}

/**
 * Splits a document for retrieval: paragraphs packed up to `size` characters; a paragraph
 * longer than that is cut at sentence ends, and a sentence longer still at `size`. Offsets
 * point into the original text, so a citation can quote it exactly.
 */
export function chunkText(text: string, size = 1200): Chunk[] {
  const pieces: Chunk[] = [];
  // Paragraphs, then sentences, as [start, end) spans of the original.
  const spans: Array<[number, number]> = [];
  const para = /[^\n]+(?:\n(?!\s*\n)[^\n]*)*/g;
  for (let m = para.exec(text); m; m = para.exec(text)) {
    const s = m.index;
    const e = s + m[0].length;
    if (e - s <= size) {
      spans.push([s, e]);
      continue;
    }
    const sentence = /[^.!?]+[.!?]*\s*/g;
    const body = m[0];
    for (let t = sentence.exec(body); t; t = sentence.exec(body)) {
      for (let a = s + t.index; a < s + t.index + t[0].length; a += size)
        spans.push([a, Math.min(a + size, s + t.index + t[0].length)]);
    }
  }
  let cur: [number, number] | undefined;
  for (const span of spans) {
    if (cur && span[1] - cur[0] <= size) cur[1] = span[1];
    else {
      if (cur) pieces.push(piece(text, cur));
      cur = [span[0], span[1]];
    }
  }
  if (cur) pieces.push(piece(text, cur));
  return pieces.filter((p) => p.text.trim() !== '');
}

function piece(text: string, [start, end]: [number, number]): Chunk {
  return { text: text.slice(start, end).trim(), start, end };
}
