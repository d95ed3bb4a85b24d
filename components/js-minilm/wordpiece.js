// A BERT WordPiece tokenizer read from a Hugging Face `tokenizer.json`:
// BertNormalizer (clean text, CJK spacing, accents stripped, lower case),
// BertPreTokenizer (whitespace and punctuation) and WordPiece (greedy
// longest match, `##` continuations), the pipeline all-MiniLM-L6-v2 uses.
// It produces the same ids as the Rust `tokenizers` crate for that model
// (tests/polyglot.rs compares the scores end to end).

const CJK = [
  [0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2b73f],
  [0x2b740, 0x2b81f], [0x2b820, 0x2ceaf], [0xf900, 0xfaff], [0x2f800, 0x2fa1f],
];
// The engine has no ICU (no `\p{...}` in regular expressions, no
// `normalize`), so Unicode facts come from generated tables.
import { OTHER, PUNCT, MARK, SPACE, STRIP_KEYS, STRIP_VALUES } from './unicode.js';

// Is `cp` inside one of the sorted [first, last] pairs of `table`?
function inRanges(table, cp) {
  let lo = 0, hi = table.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < table[2 * mid]) hi = mid - 1;
    else if (cp > table[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

function isCjk(cp) {
  return CJK.some(([lo, hi]) => cp >= lo && cp <= hi);
}

function isControl(cp) {
  return cp !== 9 && cp !== 10 && cp !== 13 && inRanges(OTHER, cp);
}

function isWhitespace(cp) {
  return inRanges(SPACE, cp);
}

function isPunctuation(cp) {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
    (cp >= 123 && cp <= 126) || inRanges(PUNCT, cp);
}

// NFD with the non-spacing marks dropped, one character at a time.
function stripAccents(cp) {
  if (cp >= 0xac00 && cp <= 0xd7a3) {
    const s = cp - 0xac00, t = s % 28;
    const jamo = [0x1100 + Math.floor(s / 588), 0x1161 + Math.floor((s % 588) / 28)];
    if (t) jamo.push(0x11a7 + t);
    return String.fromCodePoint(...jamo);
  }
  if (inRanges(MARK, cp)) return '';
  let lo = 0, hi = STRIP_KEYS.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < STRIP_KEYS[mid]) hi = mid - 1;
    else if (cp > STRIP_KEYS[mid]) lo = mid + 1;
    else return String.fromCodePoint(...STRIP_VALUES[mid]);
  }
  return String.fromCodePoint(cp);
}

/// Settings the plugin's `tokenizer.json` must have for this code to match it.
function checkConfig(json) {
  const n = json.normalizer, p = json.pre_tokenizer, m = json.model;
  if (!m || m.type !== 'WordPiece') throw new Error(`model is ${m && m.type}, not WordPiece`);
  if (!n || n.type !== 'BertNormalizer') throw new Error(`normalizer is ${n && n.type}, not BertNormalizer`);
  if (!p || p.type !== 'BertPreTokenizer') throw new Error(`pre_tokenizer is ${p && p.type}, not BertPreTokenizer`);
}

export class WordPiece {
  /// Parse the text of a `tokenizer.json`; throws an Error saying what is wrong.
  constructor(text) {
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`cannot parse tokenizer.json: ${e.message}`);
    }
    checkConfig(json);
    const n = json.normalizer;
    this.cleanText = n.clean_text !== false;
    this.chinese = n.handle_chinese_chars !== false;
    this.lowercase = n.lowercase !== false;
    this.stripAccents = n.strip_accents === null || n.strip_accents === undefined ? this.lowercase : n.strip_accents;
    this.vocab = new Map(Object.entries(json.model.vocab));
    this.prefix = json.model.continuing_subword_prefix ?? '##';
    this.maxWordChars = json.model.max_input_chars_per_word ?? 100;
    this.unk = this.id(json.model.unk_token ?? '[UNK]');
    this.cls = this.id('[CLS]');
    this.sep = this.id('[SEP]');
    this.pad = json.padding ? json.padding.pad_id : (this.vocab.get('[PAD]') ?? 0);
  }

  id(token) {
    const id = this.vocab.get(token);
    if (id === undefined) throw new Error(`tokenizer.json has no ${token} token`);
    return id;
  }

  normalize(text) {
    let out = '';
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      if (this.cleanText) {
        if (cp === 0 || cp === 0xfffd) continue;
        if (isControl(cp)) continue;
        if (isWhitespace(cp)) { out += ' '; continue; }
      }
      if (this.chinese && isCjk(cp)) { out += ` ${ch} `; continue; }
      out += ch;
    }
    if (this.stripAccents) {
      let stripped = '';
      for (const c of out) stripped += stripAccents(c.codePointAt(0));
      out = stripped;
    }
    if (!this.lowercase) return out;
    // Per character, as the Rust tokenizer does (no final-sigma rule).
    let lower = '';
    for (const c of out) lower += c.toLowerCase();
    return lower;
  }

  /// Words: split on whitespace, each punctuation character its own word.
  words(text) {
    const words = [];
    let word = '';
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      if (isWhitespace(cp)) {
        if (word) words.push(word);
        word = '';
      } else if (isPunctuation(cp)) {
        if (word) words.push(word);
        words.push(ch);
        word = '';
      } else {
        word += ch;
      }
    }
    if (word) words.push(word);
    return words;
  }

  wordPieces(word, out) {
    const chars = Array.from(word);
    if (chars.length > this.maxWordChars) { out.push(this.unk); return; }
    const pieces = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length, found;
      while (start < end) {
        let piece = chars.slice(start, end).join('');
        if (start > 0) piece = this.prefix + piece;
        found = this.vocab.get(piece);
        if (found !== undefined) break;
        end -= 1;
      }
      if (found === undefined) { out.push(this.unk); return; }
      pieces.push(found);
      start = end;
    }
    for (const p of pieces) out.push(p);
  }

  /// `[CLS] pieces [SEP]`, at most `maxTokens` ids in all.
  encode(text, maxTokens) {
    const ids = [this.cls];
    const limit = maxTokens - 1;
    for (const word of this.words(this.normalize(text))) {
      this.wordPieces(word, ids);
      if (ids.length >= limit) break;
    }
    ids.length = Math.min(ids.length, limit);
    ids.push(this.sep);
    return ids;
  }
}
