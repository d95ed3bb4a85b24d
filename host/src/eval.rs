pub mod bm25 {}
