//! Northstar's integration and conformance tests (in `tests/`) and the benchmark ([`mod@bench`],
//! run by the `bench` binary).

pub mod bench;
