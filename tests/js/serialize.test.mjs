import { test } from "node:test";
import assert from "node:assert/strict";
import { pairsToText, textToPairs } from "../../js/lib/serialize.js";

const PAIRS = [
  { handle: [10, 20], target: [30.5, 40] },
  { handle: [0, 0], target: [639, 426.25] },
];

test("canonical text round trip", () => {
  const text = pairsToText(PAIRS);
  assert.deepEqual(JSON.parse(text), PAIRS, "plain JSON of the canonical form");
  assert.deepEqual(textToPairs(text), PAIRS);
  assert.equal(text.split("\n").length, PAIRS.length + 2, "one pair per line");
});

test("empty", () => {
  assert.equal(pairsToText([]), "[]");
  for (const t of ["", "  ", "[]", null, undefined]) assert.deepEqual(textToPairs(t), []);
});

test("alternating, wrapped and flat forms are read", () => {
  const alt = [[10, 20], [30.5, 40], [0, 0], [639, 426.25]];
  assert.deepEqual(textToPairs(JSON.stringify(alt)), PAIRS);
  assert.deepEqual(textToPairs(JSON.stringify({ points: alt })), PAIRS);
  assert.deepEqual(textToPairs(JSON.stringify({ pairs: PAIRS })), PAIRS);
  assert.deepEqual(textToPairs(JSON.stringify(alt.flat())), PAIRS);
});

test("malformed input gives readable errors", () => {
  assert.throws(() => textToPairs("{oops"), /not valid JSON/);
  assert.throws(() => textToPairs("[[1, 2]]"), /pairs/);
  assert.throws(() => textToPairs("[[1, 2], [3]]"), /point 2/);
  assert.throws(() => textToPairs('[{"handle": [1, 2]}]'), /pair 1/);
  assert.throws(() => textToPairs('[{"handle": [1, "a"], "target": [1, 2]}]'), /pair 1 handle/);
  assert.throws(() => textToPairs('{"x": 1}'), /pairs/);
  assert.throws(() => textToPairs("[1, 2, 3]"), /flat list/);
  assert.throws(() => pairsToText([{ handle: [NaN, 1], target: [1, 1] }]), /finite/);
});
