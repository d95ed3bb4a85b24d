"""Native tests of bm25.py (python -m unittest, no WebAssembly)."""

import math
import unittest

import bm25


class Bm25Test(unittest.TestCase):
    def test_stem(self):
        for word, want in [("queries", "query"), ("cats", "cat"), ("gas", "gas"), ("glass", "glass"),
                           ("status", "status"), ("horses", "horse"), ("toes", "toe")]:
            self.assertEqual(bm25.stem(word), want, word)

    def test_terms(self):
        self.assertEqual(bm25.terms("Zürich's cafés don't close", True, True), ["zürich", "café", "dont", "close"])
        self.assertEqual(bm25.terms("the cat of the hat", True, False), ["cat", "hat"])

    def test_rank_prefers_matching_passage(self):
        s = bm25.rank("rust borrow checker", ["The borrow checker enforces Rust's rules.", "", "Bread needs flour."])
        self.assertEqual(len(s), 3)
        self.assertTrue(all(math.isfinite(x) for x in s))
        self.assertGreater(s[0], s[1])
        self.assertGreater(s[0], s[2])

    def test_stopword_query_still_ranks(self):
        s = bm25.rank("to be or not to be", ["to be is to do", "a cat"])
        self.assertGreater(s[0], s[1])

    def test_settings(self):
        self.assertEqual(bm25.parse_settings([("k1", " 0.9"), ("stem", "false")])["k1"], 0.9)
        for bad in [("k_1", "1"), ("k1", "-1"), ("k1", "nan"), ("k1", "inf"), ("b", "1.5"), ("b", ""), ("stem", "yes")]:
            with self.assertRaises(ValueError) as e:
                bm25.parse_settings([bad])
            self.assertIn(bad[0], str(e.exception))


if __name__ == "__main__":
    unittest.main()
