//! Portico configuration: a TOML file becomes a validated, immutable, typed [`Config`].
//!
//! Data comes in as the text of one file (plus its path, used to resolve relative paths and
//! to name error locations) and leaves as [`Config`] (see [`model`]). Nothing here does I/O
//! beyond reading the given file. Every problem is a [`Diagnostic`] that names
//! `FILE:LINE:COL`, says what is wrong in one line and gives a hint.

pub mod model;

pub use model::*;

// The config helper fills in parsing and validation; the API below is the contract.
