//! Inputs that the fuzz targets (`fuzz/`, docs/fuzzing.md) found, kept as tests: each one
//! showed a disagreement between this crate and `spec/protocol.md`.

use northstar_protocol::canonical::parse_strict;

fn error(text: &str) -> &'static str {
    parse_strict(text)
        .expect_err("the text must be refused")
        .code()
}

/// strict_json found `1` followed by 400 zeros: §3.1 called every integer literal outside
/// `[-2^63, 2^64-1]` `float`, but one beyond the double range is `syntax`, as `1e400` is.
#[test]
fn an_integer_literal_beyond_the_double_range_is_syntax() {
    let huge = format!("1{}", "0".repeat(400));
    assert_eq!(error(&huge), "syntax");
    assert_eq!(error(&format!("-{huge}")), "syntax");
    assert_eq!(error(&format!("{{\"n\":{huge}}}")), "syntax");
    // Beyond 64 bits but within the double range: still `float`.
    assert_eq!(error("18446744073709551616"), "float");
    assert_eq!(error("-9223372036854775809"), "float");
    assert_eq!(error(&format!("1{}", "0".repeat(300))), "float");
}

/// strict_json found `1.5.5`: a number is one token, read without backtracking, and its fault
/// is met before whatever follows it; a token that its grammar cannot finish is `syntax`.
#[test]
fn a_number_token_is_read_whole_before_what_follows_it() {
    assert_eq!(error("1.5.5"), "float");
    assert_eq!(error("9007199254740992 x"), "unsafe_integer");
    assert_eq!(error("1.5e"), "syntax");
    assert_eq!(error("1.e5"), "syntax");
    assert_eq!(error("-01"), "syntax");
    assert_eq!(error("-"), "syntax");
}
