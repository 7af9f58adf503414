//! Every JSON-RPC request gets exactly one answer (`spec/protocol.md` §6.1, §6.3 common checks,
//! §6.3.15): odd ids, repeated members, bad batch entries, unstructured or non-strict params,
//! each sent raw over a WebSocket to a real node.

mod common;

use common::{Raw, TestNode};
use serde_json::{Value, json};

/// The error code and id of an answer that must be an error.
fn error_of(answer: &Value) -> (i64, Value) {
    let code = answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {answer}"));
    (code, answer["id"].clone())
}

/// After a message that must get no answer, the next answer is the next request's.
async fn assert_silent(raw: &mut Raw) {
    let answer = raw
        .exchange(r#"{"jsonrpc":"2.0","id":"next","method":"node.info"}"#)
        .await;
    assert_eq!(answer["id"], json!("next"), "{answer}");
}

#[tokio::test]
async fn a_request_with_an_odd_id_gets_invalid_request_with_id_null() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    for id in [
        "-1",
        "1.5",
        "1.0",
        "1e3",
        "{}",
        "[]",
        "true",
        "null",
        "9007199254740992",
        "18446744073709551616",
    ] {
        for method in ["space.post", "node.info", "no.such.method"] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":[]}}"#);
            let answer = raw.exchange(&text).await;
            assert_eq!(
                error_of(&answer),
                (-32600, Value::Null),
                "id {id}: {answer}"
            );
        }
    }
    // The largest safe integer and strings are ids.
    let answer = raw
        .exchange(r#"{"jsonrpc":"2.0","id":9007199254740991,"method":"node.info"}"#)
        .await;
    assert_eq!(answer["id"], json!(9007199254740991_u64), "{answer}");
    let answer = raw
        .exchange(r#"{"jsonrpc":"2.0","id":"a\"b","method":"node.info"}"#)
        .await;
    assert_eq!(answer["id"], json!("a\"b"), "{answer}");
}

#[tokio::test]
async fn repeated_envelope_members_and_bad_envelopes_are_answered() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    for text in [
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"node.info"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"node.info","method":"space.list"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"node.info","params":[],"params":{}}"#,
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"node.info"}"#,
        // Without id, but not a notification either.
        r#"{"jsonrpc":"1.0","method":"node.info"}"#,
        r#"{"jsonrpc":"2.0","method":7}"#,
        r#"{"id":null}"#,
        r#""node.info""#,
        "42",
    ] {
        let answer = raw.exchange(text).await;
        assert_eq!(error_of(&answer), (-32600, Value::Null), "{text}: {answer}");
    }
    // A valid id is kept when the rest is wrong.
    let answer = raw
        .exchange(r#"{"jsonrpc":"1.0","id":5,"method":"node.info"}"#)
        .await;
    assert_eq!(error_of(&answer), (-32600, json!(5)), "{answer}");
    let answer = raw.exchange(r#"{"jsonrpc":"2.0","id":"s"}"#).await;
    assert_eq!(error_of(&answer), (-32600, json!("s")), "{answer}");
    // Not JSON.
    let answer = raw
        .exchange(r#"{"jsonrpc":"2.0","id":1,"method":"node.info""#)
        .await;
    assert_eq!(error_of(&answer), (-32700, Value::Null), "{answer}");
    // Unknown members are ignored, even repeated; a notification runs nothing, answers nothing.
    let answer = raw
        .exchange(r#"{"jsonrpc":"2.0","id":6,"method":"node.info","x":1,"x":2}"#)
        .await;
    assert!(answer["result"]["did"].is_string(), "{answer}");
    raw.send_text(r#"{"jsonrpc":"2.0","method":"node.info","params":[]}"#.into())
        .await;
    assert_silent(&mut raw).await;
}

#[tokio::test]
async fn batch_entries_that_are_not_requests_get_invalid_request_not_parse_error() {
    let node = TestNode::start_with(|c| c.limits.max_batch = 8).await;
    let mut raw = Raw::connect(&node.url).await;
    let batch = r#"[1, "x", null, [], {"jsonrpc":"2.0","id":-1,"method":"node.info"},
        {"jsonrpc":"2.0","id":2,"method":"node.info"}, {"jsonrpc":"2.0","method":"node.info"}]"#;
    let answer = raw.exchange(batch).await;
    let answers = answer.as_array().unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(
        answers.len(),
        6,
        "the notification gets no answer: {answer}"
    );
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.get("error").is_some())
        .collect();
    assert_eq!(refused.len(), 5, "{answer}");
    for a in refused {
        assert_eq!(error_of(a), (-32600, Value::Null), "{answer}");
    }
    assert!(
        answers
            .iter()
            .any(|a| a["id"] == json!(2) && a["result"].is_object())
    );
}

#[tokio::test]
async fn params_that_are_neither_array_nor_object_get_invalid_params_on_every_method() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    for params in ["null", "1", "\"x\"", "true"] {
        for method in [
            "node.info",
            "auth.challenge",
            "space.list",
            "space.post",
            "space.subscribe",
            "space.unsubscribe",
        ] {
            let text =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
            let answer = raw.exchange(&text).await;
            assert_eq!(
                error_of(&answer),
                (-32602, json!(1)),
                "{method} {params}: {answer}"
            );
        }
    }
    // The method is checked first.
    let answer = raw
        .exchange(r#"{"jsonrpc":"2.0","id":2,"method":"no.such","params":7}"#)
        .await;
    assert_eq!(error_of(&answer), (-32601, json!(2)), "{answer}");
    // Absent params and an empty array are both fine for a method without parameters.
    for text in [
        r#"{"jsonrpc":"2.0","id":3,"method":"node.info"}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"node.info","params":[]}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"node.info","params":{}}"#,
    ] {
        assert!(raw.exchange(text).await["result"].is_object(), "{text}");
    }
}

#[tokio::test]
async fn unsafe_integers_floats_and_repeated_keys_in_params_are_refused_by_name() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    let space = "channel/z6MkvRXNYcE7MMduynWTgeKbDaT1iijDSC8pZqXZc8rHPrf2/x";
    let cases = [
        (
            "space.events",
            format!(r#"["{space}", 9007199254740992, 10]"#),
            "unsafe_integer",
        ),
        (
            "space.subscribe",
            format!(r#"["{space}", 9007199254740992]"#),
            "unsafe_integer",
        ),
        ("space.events", format!(r#"["{space}", 1.0, 10]"#), "float"),
        (
            "space.events",
            format!(r#"{{"space":"{space}","since":0,"since":1,"limit":1}}"#),
            "duplicate_key",
        ),
        (
            "space.post",
            r#"[{"created_at":9007199254740992,"title":"t"},{}]"#.to_owned(),
            "unsafe_integer",
        ),
        (
            "space.post",
            r#"[{"k":{"a":1,"a":2}},{}]"#.to_owned(),
            "duplicate_key",
        ),
        ("node.info", "[1e2]".to_owned(), "float"),
    ];
    for (method, params, name) in cases {
        let text = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let answer = raw.exchange(&text).await;
        assert_eq!(
            error_of(&answer),
            (-32602, json!(1)),
            "{method} {params}: {answer}"
        );
        let data = answer["error"]["data"].as_str().unwrap_or_default();
        assert!(
            data.starts_with(&format!("{name}: ")),
            "{method} {params}: {answer}"
        );
    }
    // The largest safe integer passes the check (and the space is simply not there).
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"space.events","params":["{space}",9007199254740991,1]}}"#
    );
    let answer = raw.exchange(&text).await;
    assert_ne!(answer["error"]["code"], json!(-32602), "{answer}");
}

#[tokio::test]
async fn unsubscribe_answers_false_for_anything_that_is_not_an_active_subscription() {
    let node = TestNode::start().await;
    let mut raw = Raw::connect(&node.url).await;
    for params in [
        "[1.5]",
        "[-1]",
        "[{}]",
        "[null]",
        "[18446744073709551616]",
        "[9007199254740993]",
        r#"["1"]"#,
        "[]",
        "{}",
        r#"{"subscription":"x"}"#,
        r#"{"subscription":1,"subscription":2}"#,
    ] {
        let text =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"space.unsubscribe","params":{params}}}"#);
        let answer = raw.exchange(&text).await;
        assert_eq!(answer["result"], json!(false), "{params}: {answer}");
    }
    let answer = raw
        .exchange(r#"{"jsonrpc":"2.0","id":1,"method":"space.unsubscribe"}"#)
        .await;
    assert_eq!(answer["result"], json!(false), "{answer}");
}
