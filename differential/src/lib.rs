//! The differential test's package (`tests/differential.rs`). It has no code of its own: it is a
//! package so that the crates it links statically are nobody else's dependencies (see
//! `Cargo.toml`).
