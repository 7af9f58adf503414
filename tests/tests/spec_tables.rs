//! The spec's tables against the code: every application error code is in the table of
//! `spec/protocol.md` §6.4 with its exact number and name (and the table holds no other), and
//! every JSON-RPC method has its own subsection: a client method in §6.3 (`#### 6.3.N`), a
//! method nodes call on each other (`fed.*`) in §9 (`#### 9.N.M`).
//!
//! The method names are `northstar_protocol::method::ALL`; a test here also checks that the
//! node serves each of them, so the constants cannot drift from the traits `jsonrpsee` reads.

mod common;

use std::path::PathBuf;

use northstar_protocol::api::ErrorCode;
use northstar_protocol::method::ALL as WIRE_METHODS;

/// The section that documents a method: §9 (federation) for `fed.*`, §6.3 for the rest.
fn home_section(method: &str) -> &'static str {
    if method.starts_with("fed.") {
        "9."
    } else if method.starts_with("stream.") {
        "10."
    } else if method.starts_with("blob.") {
        "13."
    } else {
        "6.3."
    }
}

/// JSON-RPC reserves these codes; the application table must not use them.
const RESERVED: std::ops::RangeInclusive<i64> = -32768..=-32000;

fn spec() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of the section whose heading starts with `heading` (e.g. `### 6.4 `), up to the
/// next heading of the same or a higher level.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("the spec has no heading starting with {heading:?}"));
    lines
        .take_while(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            !(hashes > 0 && hashes <= level && l[hashes..].starts_with(' '))
        })
        .collect()
}

/// The cells of a markdown table row, trimmed; `None` for any other line.
fn cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

/// The rows of §6.4's tables whose first cell is an integer code: `(code, name)`.
fn coded_rows(text: &str) -> Vec<(i64, String)> {
    section(text, "### 6.4 ")
        .into_iter()
        .filter_map(cells)
        .filter_map(|row| {
            let code = row.first()?.replace('−', "-").parse::<i64>().ok()?;
            let name = row.get(1)?.trim_matches('`').to_owned();
            Some((code, name))
        })
        .collect()
}

/// The application rows of §6.4: those outside JSON-RPC's reserved range.
fn application_rows(text: &str) -> Vec<(i64, String)> {
    coded_rows(text)
        .into_iter()
        .filter(|(code, _)| !RESERVED.contains(code))
        .collect()
}

/// The wire names of the method headings, with their section numbers: `#### 6.3.N `name``
/// and `#### 9.N.M `name`` (also §10 and §13).
fn method_headings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("#### ")?;
            let (number, title) = rest.split_once(' ')?;
            let parts: Vec<u32> = number
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let method_section = matches!(
                parts.as_slice(),
                [6, 3, _] | [9, _, _] | [10, _, _] | [13, _, _]
            );
            if !method_section {
                return None;
            }
            let name = title.trim().strip_prefix('`')?.strip_suffix('`')?;
            Some((number.to_owned(), name.to_owned()))
        })
        .collect()
}

fn check_error_table(text: &str) -> Result<(), String> {
    let rows = application_rows(text);
    let mut problems = Vec::new();
    for code in ErrorCode::ALL {
        let matching: Vec<_> = rows
            .iter()
            .filter(|(c, _)| *c == i64::from(code.code()))
            .collect();
        match matching.as_slice() {
            [] => problems.push(format!("{} {} has no row", code.code(), code.name())),
            [(_, name)] if name == code.name() => {}
            [(_, name)] => problems.push(format!(
                "{} is named {name:?} in the table, {:?} in the code",
                code.code(),
                code.name()
            )),
            _ => problems.push(format!("{} has {} rows", code.code(), matching.len())),
        }
    }
    for (code, name) in &rows {
        if i32::try_from(*code)
            .ok()
            .and_then(ErrorCode::from_code)
            .is_none()
        {
            problems.push(format!(
                "the table lists {code} {name}, which ErrorCode lacks"
            ));
        }
    }
    let in_table: Vec<i64> = rows.iter().map(|(c, _)| *c).collect();
    let in_code: Vec<i64> = ErrorCode::ALL.iter().map(|c| i64::from(c.code())).collect();
    if problems.is_empty() && in_table != in_code {
        problems.push(format!(
            "the table's order {in_table:?} is not ErrorCode::ALL's {in_code:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn check_method_headings(text: &str) -> Result<(), String> {
    let headings = method_headings(text);
    let mut problems = Vec::new();
    for method in WIRE_METHODS {
        let section = home_section(method);
        let found: Vec<&String> = headings
            .iter()
            .filter(|(_, name)| name == method)
            .map(|(number, _)| number)
            .collect();
        match found.as_slice() {
            [number] if number.starts_with(section) => {}
            [number] => problems.push(format!(
                "`{method}` is documented in §{number}, not under §{section}"
            )),
            [] => problems.push(format!("no \"#### {section}… `{method}`\" heading")),
            more => problems.push(format!("{} headings for `{method}`", more.len())),
        }
    }
    for (number, name) in &headings {
        if !WIRE_METHODS.contains(&name.as_str()) {
            problems.push(format!("§{number} documents `{name}`, which the API lacks"));
        }
    }
    let mut numbers: Vec<&str> = headings.iter().map(|(n, _)| n.as_str()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.len() != headings.len() {
        problems.push("two method headings share a section number".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_error_code_is_in_the_spec_table_and_no_other() {
    check_error_table(&spec()).unwrap_or_else(|problems| panic!("spec §6.4:\n{problems}"));
}

#[test]
fn every_method_has_a_section_in_the_spec() {
    check_method_headings(&spec()).unwrap_or_else(|problems| panic!("spec §6.3:\n{problems}"));
}

#[tokio::test]
async fn the_node_serves_every_method_named_in_the_protocol_crate() {
    let node = common::TestNode::start().await;
    let mut raw = common::Raw::connect(&node.url).await;
    for method in WIRE_METHODS {
        let response = raw.call(method, serde_json::json!([])).await;
        assert_ne!(
            response["error"]["code"],
            serde_json::json!(-32601),
            "{method}: {response}"
        );
    }
    let response = raw
        .call("space.no_such_method", serde_json::json!([]))
        .await;
    assert_eq!(response["error"]["code"], serde_json::json!(-32601));
}

#[test]
fn the_json_rpc_codes_of_the_spec_stay_in_the_reserved_range() {
    // The first table of §6.4 holds the JSON-RPC codes; a typo that moved one out of the
    // reserved range would make it look like an application code the enum lacks.
    let reserved: Vec<i64> = coded_rows(&spec())
        .into_iter()
        .map(|(code, _)| code)
        .filter(|code| *code < 0)
        .collect();
    assert!(!reserved.is_empty(), "§6.4 lists no JSON-RPC codes");
    for code in reserved {
        assert!(RESERVED.contains(&code), "{code} is not a JSON-RPC code");
    }
}

/// The checks must notice a damaged spec, or they prove nothing.
#[test]
fn the_checks_fail_when_a_row_or_a_heading_goes_missing() {
    let text = spec();
    check_error_table(&text).expect("the spec as it is passes");
    check_method_headings(&text).expect("the spec as it is passes");

    let row = "| 1202 | not_member |";
    let line = text
        .lines()
        .find(|l| l.starts_with(row))
        .expect("§6.4 has a not_member row");
    let without_row = text.replace(&format!("{line}\n"), "");
    let err = check_error_table(&without_row).expect_err("a missing row must fail");
    assert!(err.contains("1202 not_member has no row"), "{err}");

    let renamed = text.replace(row, "| 1202 | not_a_member |");
    let err = check_error_table(&renamed).expect_err("a wrong name must fail");
    assert!(err.contains("not_a_member"), "{err}");

    let extra = text.replace(
        line,
        &format!("{line}\n| 1299 | made_up | not a real code |"),
    );
    let err = check_error_table(&extra).expect_err("an unknown code must fail");
    assert!(err.contains("1299 made_up"), "{err}");

    let heading = text
        .lines()
        .find(|l| l.starts_with("#### 6.3.") && l.ends_with("`space.leave`"))
        .expect("§6.3 has a space.leave heading");
    let without_heading = text.replace(heading, "#### 6.3.9 Leaving a space");
    let err = check_method_headings(&without_heading).expect_err("a missing heading must fail");
    assert!(err.contains("`space.leave`"), "{err}");

    let unknown = text.replace(heading, "#### 6.3.9 `space.kick`");
    let err = check_method_headings(&unknown).expect_err("an unknown method must fail");
    assert!(err.contains("`space.kick`"), "{err}");

    let fed = text
        .lines()
        .find(|l| l.starts_with("#### 9.") && l.ends_with("`fed.push`"))
        .expect("§9 has a fed.push heading");
    let without_fed = text.replace(fed, "#### 9.5.1 Pushing events");
    let err = check_method_headings(&without_fed).expect_err("a missing §9 heading must fail");
    assert!(err.contains("`fed.push`"), "{err}");

    let misplaced = text.replace(fed, "#### 6.3.99 `fed.push`");
    let err = check_method_headings(&misplaced).expect_err("a fed method in §6.3 must fail");
    assert!(err.contains("`fed.push` is documented in §6.3.99"), "{err}");

    let invented = text.replace(fed, &format!("{fed}\n\n#### 9.5.2 `fed.pull`"));
    let err = check_method_headings(&invented).expect_err("an unknown fed method must fail");
    assert!(err.contains("`fed.pull`"), "{err}");
}

#[test]
fn the_node_limits_table_lists_every_limits_key_with_its_default() {
    let text = spec();
    let defaults = serde_json::to_value(northstar_node::config::Limits::default()).unwrap();
    let defaults = defaults.as_object().unwrap();
    let mut listed = Vec::new();
    for line in section(&text, "### 7.2 ") {
        let Some(cells) = cells(line) else { continue };
        let (Some(key), Some(default)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        let Some(key) = key.strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
            continue;
        };
        if let Some(value) = defaults.get(key) {
            assert_eq!(
                default.to_string(),
                value.to_string(),
                "§7.2 default of {key}"
            );
            listed.push(key.to_owned());
        }
    }
    let missing: Vec<_> = defaults.keys().filter(|k| !listed.contains(k)).collect();
    assert!(missing.is_empty(), "§7.2 lacks {missing:?}");
}

#[test]
fn the_node_info_example_shows_every_client_limit_with_its_default() {
    let text = spec();
    let lines = section(&text, "#### 6.3.2 ");
    let block = lines.join("\n");
    let example = block
        .split("```json")
        .filter_map(|part| part.split("```").next())
        .find(|part| part.contains("\"result\""))
        .expect("§6.3.2 has a result example");
    let answer: serde_json::Value = serde_json::from_str(example).unwrap();
    let limits = &answer["result"]["limits"];
    // Every member LimitsInfo has, and no other.
    let _: northstar_protocol::api::LimitsInfo =
        serde_json::from_value(limits.clone()).expect("the example's limits are LimitsInfo");
    let defaults = serde_json::to_value(northstar_node::config::Limits::default()).unwrap();
    for (key, value) in limits.as_object().unwrap() {
        assert_eq!(&defaults[key], value, "§6.3.2 example, {key}");
        assert!(
            block.contains(&format!("`{key}`")),
            "§6.3.2 does not name {key} in its text"
        );
    }
}
