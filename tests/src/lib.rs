//! Northstar's integration and conformance tests (in `tests/`), the benchmark ([`mod@bench`],
//! run by the `bench` binary), and the PostgreSQL databases both use ([`postgres`]).

pub mod bench;
pub mod postgres;
