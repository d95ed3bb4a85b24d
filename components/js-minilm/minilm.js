// nboost-reranker-minilm-js: the MiniLM bi-encoder reranker written in
// JavaScript, built into a component with componentize-js (StarlingMonkey).
//
// World `nn-reranker-plugin`: the transformer runs in the host's wasi-nn
// back-end (tract, ONNX Runtime or OpenVINO); the tokenizer (wordpiece.js),
// batching, mean pooling and cosine similarity run here, in JavaScript. Same
// settings and same scores as the Rust `minilm` component, so a model author
// can see the whole model path outside Rust.
//
// Settings: `graph` (default all-minilm-l6-v2), `tokenizer` (required: the
// text of tokenizer.json), `max-tokens` (256, in [8, 512]), `batch-size`
// (16, in [1, 256]). Any other key is `invalid-config`.

import { loadByName } from 'wasi:nn/graph@0.2.0-rc-2024-10-28';
import { Tensor } from 'wasi:nn/tensor@0.2.0-rc-2024-10-28';
import { WordPiece } from './wordpiece.js';

const KEYS = ['graph', 'tokenizer', 'max-tokens', 'batch-size'];
// Text past this many characters per token can never reach the model.
const CLIP_CHARS_PER_TOKEN = 64;

let state = null;

function fail(tag, message) {
  // componentize-js turns a thrown { tag, val } into `err(variant)`.
  throw { tag, val: message };
}

function nnMessage(e) {
  const p = e && e.payload;
  if (p && typeof p.code === 'function') return `wasi-nn ${p.code()}: ${p.data()}`;
  return String(e && e.message ? e.message : e);
}

function integer(key, value, lo, hi) {
  if (!/^[0-9]+$/.test(value)) fail('invalid-config', `${key} = ${JSON.stringify(value)}: not a whole number`);
  const n = Number(value);
  if (n < lo || n > hi) fail('invalid-config', `${key} = ${n}: must be in [${lo}, ${hi}]`);
  return n;
}

function configure(settings) {
  state = null;
  const s = { graph: 'all-minilm-l6-v2', maxTokens: 256, batchSize: 16, tokenizer: null };
  for (const [key, value] of settings) {
    if (!KEYS.includes(key)) fail('invalid-config', `unknown setting \`${key}\` (known: ${KEYS.join(', ')})`);
    if (key === 'graph') s.graph = value;
    if (key === 'tokenizer') s.tokenizer = value;
    if (key === 'max-tokens') s.maxTokens = integer(key, value, 8, 512);
    if (key === 'batch-size') s.batchSize = integer(key, value, 1, 256);
  }
  if (s.tokenizer === null) fail('invalid-config', 'the `tokenizer` setting (the text of tokenizer.json) is required');
  if (s.graph === '') fail('invalid-config', '`graph` must name a graph');
  let tokenizer;
  try {
    tokenizer = new WordPiece(s.tokenizer);
  } catch (e) {
    fail('invalid-config', e.message);
  }
  let context;
  try {
    context = loadByName(s.graph).initExecutionContext();
  } catch (e) {
    fail('backend', `graph \`${s.graph}\`: ${nnMessage(e)}`);
  }
  state = { ...s, tokenizer, context };
  return {
    name: s.graph,
    version: '0.1.0-js',
    description: 'BERT bi-encoder (mean pooling, cosine similarity) in JavaScript (componentize-js)',
    preferredBatchSize: Math.max(1, s.batchSize - 1),
    maxTokens: s.maxTokens,
  };
}

function i64Tensor(values, dims) {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]);
  return new Tensor(dims, 'I64', new Uint8Array(data.buffer));
}

// Embed a batch of id lists: one L2-normalised mean-pooled vector each.
function embed(batch) {
  const { context, tokenizer } = state;
  const rows = batch.length;
  const seq = Math.max(...batch.map((ids) => ids.length));
  const ids = new Array(rows * seq).fill(tokenizer.pad);
  const mask = new Array(rows * seq).fill(0);
  batch.forEach((row, r) => row.forEach((id, t) => { ids[r * seq + t] = id; mask[r * seq + t] = 1; }));
  const dims = new Uint32Array([rows, seq]);
  let outputs;
  try {
    outputs = context.compute([
      ['input_ids', i64Tensor(ids, dims)],
      ['attention_mask', i64Tensor(mask, dims)],
      ['token_type_ids', i64Tensor(new Array(rows * seq).fill(0), dims)],
    ]);
  } catch (e) {
    fail('backend', `compute: ${nnMessage(e)}`);
  }
  const named = outputs.find(([name]) => name === 'last_hidden_state') ?? (outputs.length === 1 ? outputs[0] : null);
  if (!named) fail('backend', `no last_hidden_state among ${outputs.map(([n]) => n).join(', ')}`);
  const out = named[1];
  const odims = Array.from(out.dimensions());
  const ty = out.ty();
  if (ty !== 'FP32') fail('backend', `last_hidden_state is ${ty}, not FP32`);
  if (odims.length !== 3 || odims[0] !== rows || odims[1] !== seq) {
    fail('backend', `last_hidden_state has dimensions [${odims}], expected [${rows}, ${seq}, hidden]`);
  }
  const hidden = odims[2];
  const bytes = out.data();
  if (bytes.length !== rows * seq * hidden * 4) fail('backend', `last_hidden_state has ${bytes.length} bytes for [${odims}]`);
  const values = new Float32Array(bytes.slice().buffer);
  return batch.map((row, r) => {
    const v = new Float64Array(hidden);
    for (let t = 0; t < row.length; t++) {
      const base = (r * seq + t) * hidden;
      for (let h = 0; h < hidden; h++) v[h] += values[base + h];
    }
    let norm = 0;
    for (let h = 0; h < hidden; h++) { v[h] /= row.length; norm += v[h] * v[h]; }
    norm = Math.max(Math.sqrt(norm), 1e-12);
    for (let h = 0; h < hidden; h++) v[h] /= norm;
    if (v.some((x) => !Number.isFinite(x))) fail('backend', 'the model returned a non-finite embedding');
    return v;
  });
}

function score(query, passages) {
  if (state === null) fail('invalid-config', 'score called before a successful configure');
  if (passages.length === 0) return new Float32Array(0);
  const { tokenizer, maxTokens, batchSize } = state;
  const clip = maxTokens * CLIP_CHARS_PER_TOKEN;
  const texts = [query, ...passages];
  const encoded = texts.map((t) => tokenizer.encode(t.length > clip ? t.slice(0, clip) : t, maxTokens));
  // Batch texts of similar length together: padding is wasted compute.
  const order = encoded.map((_, i) => i).sort((a, b) => encoded[a].length - encoded[b].length || a - b);
  const vectors = new Array(texts.length);
  for (let start = 0; start < order.length; start += batchSize) {
    const chunk = order.slice(start, start + batchSize);
    embed(chunk.map((i) => encoded[i])).forEach((v, k) => { vectors[chunk[k]] = v; });
  }
  const q = vectors[0];
  const scores = new Float32Array(passages.length);
  for (let p = 0; p < passages.length; p++) {
    const v = vectors[p + 1];
    let dot = 0;
    for (let h = 0; h < q.length; h++) dot += q[h] * v[h];
    scores[p] = dot;
  }
  return scores;
}

export const reranker = { configure, score };
