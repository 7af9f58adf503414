//! The web app at `/app/`, asked of real nodes over TCP (and TLS): every file of `web/app/`
//! and `web/pkg/` served byte for byte with its type and the app's security headers, ETags and
//! 304s, redirects, refusals, and `app = false`.

mod common;

use std::path::{Path, PathBuf};

use common::tls::{TestCa, https_get};
use common::{Answer, TestNode, request, request_with};

/// `web/` in this repository.
fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// Every file under `dir` (its path below `dir`, with `/`), names starting with a dot left out
/// as the node leaves them out.
fn files(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            files(&entry.path(), &format!("{prefix}{name}/"), out);
        } else {
            out.push((format!("{prefix}{name}"), entry.path()));
        }
    }
}

fn assert_app_headers(answer: &Answer, what: &str) {
    assert_eq!(
        answer.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    let policy = answer
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    for directive in [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "connect-src 'self'",
        "img-src 'self' blob:",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{what}: {policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert!(
        !policy.contains("'unsafe-eval'"),
        "{what}: only WebAssembly may be compiled: {policy}"
    );
}

#[tokio::test]
async fn every_file_of_the_app_and_the_sdk_is_served_as_it_is_on_disk_with_its_type() {
    let node = TestNode::start().await;

    let index = std::fs::read(web().join("app/index.html")).unwrap();
    for path in ["/app/", "/app/index.html"] {
        let page = request(node.addr, "GET", path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(page.bytes, index, "{path}");
        assert_app_headers(&page, path);
        // The policy also lets the page reach the node's own origin, under any name it was
        // opened by.
        let policy = page.header("content-security-policy").unwrap();
        assert!(
            policy.contains(&format!("connect-src 'self' {};", node.url)),
            "{policy}"
        );
    }

    let wasm = request(node.addr, "GET", "/app/pkg/northstar_web_bg.wasm").await;
    assert_eq!(wasm.status, 200);
    assert_eq!(wasm.header("content-type"), Some("application/wasm"));
    let on_disk = std::fs::read(web().join("pkg/northstar_web_bg.wasm")).unwrap();
    assert!(
        wasm.bytes == on_disk,
        "the node serves a module of {} bytes, web/pkg/ holds one of {}: rebuild the node",
        wasm.bytes.len(),
        on_disk.len()
    );
    assert_app_headers(&wasm, "the module");

    let glue = request(node.addr, "GET", "/app/pkg/northstar_web.js").await;
    assert_eq!(glue.status, 200);
    assert_eq!(
        glue.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let types = request(node.addr, "GET", "/app/pkg/northstar_web.d.ts").await;
    assert_eq!(types.status, 200);
    assert_eq!(
        types.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    // All of web/app/ and web/pkg/, subdirectories included, and nothing differs.
    let mut all = Vec::new();
    files(&web().join("app"), "", &mut all);
    files(&web().join("pkg"), "pkg/", &mut all);
    assert!(all.len() >= 4, "{all:?}");
    for (path, file) in all {
        let answer = request(node.addr, "GET", &format!("/app/{path}")).await;
        assert_eq!(answer.status, 200, "/app/{path}");
        assert!(
            answer.bytes == std::fs::read(&file).unwrap(),
            "/app/{path} is not {}",
            file.display()
        );
        assert_app_headers(&answer, &path);
        assert_eq!(answer.header("cache-control"), Some("no-cache"), "{path}");
    }

    // HEAD: the same headers, no body.
    let head = request(node.addr, "HEAD", "/app/pkg/northstar_web_bg.wasm").await;
    assert_eq!(head.status, 200);
    assert!(head.bytes.is_empty());
    assert_eq!(head.header("content-type"), Some("application/wasm"));
    assert_eq!(
        head.header("content-length"),
        Some(on_disk.len().to_string().as_str())
    );
    assert_eq!(head.header("etag"), wasm.header("etag"));
}

#[tokio::test]
async fn a_file_the_browser_has_is_answered_304_by_its_etag() {
    let node = TestNode::start().await;
    let path = "/app/pkg/northstar_web_bg.wasm";
    let first = request(node.addr, "GET", path).await;
    let etag = first.header("etag").unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 20,
        "{etag}"
    );
    assert_eq!(first.header("cache-control"), Some("no-cache"));

    for asked in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let again = request_with(node.addr, "GET", path, &[("If-None-Match", &asked)]).await;
        assert_eq!(again.status, 304, "If-None-Match: {asked}");
        assert!(again.bytes.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(again.header("cache-control"), Some("no-cache"));
        assert_app_headers(&again, "a 304");
    }
    let changed = request_with(node.addr, "GET", path, &[("If-None-Match", "\"0123\"")]).await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.bytes, first.bytes);

    // Another file has another tag, and the page's tag does not answer for the module.
    let page = request(node.addr, "GET", "/app/").await;
    let page_tag = page.header("etag").unwrap();
    assert_ne!(page_tag, etag);
    let crossed = request_with(node.addr, "GET", path, &[("If-None-Match", page_tag)]).await;
    assert_eq!(crossed.status, 200);
}

#[tokio::test]
async fn unknown_files_and_escapes_are_not_found_and_app_without_a_slash_redirects() {
    let node = TestNode::start().await;

    let redirect = request(node.addr, "GET", "/app").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/app/"));
    let with_query = request(node.addr, "GET", "/app?space=x").await;
    assert_eq!(with_query.status, 308);
    assert_eq!(with_query.header("location"), Some("/app/?space=x"));
    // A query does not change which file is served.
    let page = request(node.addr, "GET", "/app/?space=x").await;
    assert_eq!(page.status, 200);

    for path in [
        "/app/nothing.js",
        "/app/pkg/",
        "/app/pkg",
        "/app/pkg/nothing.wasm",
        "/app//index.html",
        "/app/./index.html",
        "/app/../Cargo.toml",
        "/app/pkg/../index.html",
        "/app/../../../../etc/passwd",
        "/app/%2e%2e/Cargo.toml",
        "/app/%2E%2E%2F%2E%2E%2FCargo.toml",
        "/app/pkg%2fnorthstar_web.js",
        "/app/pkg%2Fnorthstar_web_bg.wasm",
        "/app/..%2fnode%2fbuild.rs",
        "/app/index.html%00",
        "/app/index.html/",
        "/app/INDEX.HTML",
    ] {
        let answer = request(node.addr, "GET", path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
    // What hyper does not take as a path at all never reaches the app.
    let bad = request(node.addr, "GET", "/app/..\\..\\Cargo.toml").await;
    assert!(bad.status == 400 || bad.status == 404, "{}", bad.status);

    // A path that only starts like the app's is not the app's.
    assert_eq!(request(node.addr, "GET", "/application").await.status, 404);

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let answer = request(node.addr, method, "/app/").await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[tokio::test]
async fn the_status_page_links_the_app_and_a_node_without_it_serves_none() {
    let on = TestNode::start().await;
    let status = request(on.addr, "GET", "/").await;
    assert!(status.body.contains("href=\"/app/\""), "{}", status.body);

    let off = TestNode::start_with(|c| c.app = false).await;
    for path in ["/app/", "/app/index.html", "/app/pkg/northstar_web_bg.wasm"] {
        let answer = request(off.addr, "GET", path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.header("content-security-policy").is_none(), "{path}");
    }
    assert_eq!(request(off.addr, "GET", "/app").await.status, 404);
    let status = request(off.addr, "GET", "/").await;
    assert_eq!(status.status, 200);
    assert!(!status.body.contains("/app/"), "{}", status.body);
}

#[tokio::test]
async fn a_tls_node_serves_the_app_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("App CA");
    let (cert, key) = ca.write_leaf(dir.path(), "node", 1);
    let ca_file = ca.write(dir.path(), "ca.pem");
    let node = TestNode::start_with(|c| {
        c.tls_cert = cert.display().to_string();
        c.tls_key = key.display().to_string();
        c.tls_ca = ca_file.display().to_string();
    })
    .await;
    let (status, body) = https_get(node.addr, "/app/", ca.pem.as_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body.as_bytes(),
        std::fs::read(web().join("app/index.html")).unwrap()
    );
    let (status, _) = https_get(node.addr, "/app/pkg/northstar_web.js", ca.pem.as_bytes()).await;
    assert_eq!(status, 200);
}
