//! Integration and conformance tests for Northstar; the tests live in `tests/`.
