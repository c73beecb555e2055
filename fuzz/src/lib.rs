//! The fuzz targets' checks, shared with `engine/tests/fuzz_corpus.rs`.
pub mod checks;
