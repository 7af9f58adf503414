//! Embeds the web app's files in the node (`src/app.rs` serves them at `/app/`): `web/app/`
//! (the page, its script and styles) and `web/pkg/` (the browser SDK that `scripts/build-web`
//! made). It writes `$OUT_DIR/assets.rs`, a table of `(path, include_bytes!(file))` sorted by
//! path, with `web/pkg/`'s files under `pkg/`.
//!
//! Cargo runs this again whenever anything in either directory changes, a file added or
//! removed included (it watches the directories), which a macro that lists a directory could
//! not promise on stable Rust. A name outside `[A-Za-z0-9._-]` stops the build: URLs carry the
//! names as they are, so nothing ever needs decoding. Names starting with a dot are left out.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let web = manifest.join("../web");
    println!("cargo::rerun-if-changed=build.rs");
    if web.join("app/pkg").exists() {
        return Err("web/app/pkg: /app/pkg/ is web/pkg/, so web/app/ may not have one".into());
    }
    let mut files = Vec::new();
    for (dir, prefix) in [("app", ""), ("pkg", "pkg/")] {
        let dir = web.join(dir);
        if !dir.is_dir() {
            return Err(format!(
                "{} is missing: web/app/ is the web app and web/pkg/ is made by scripts/build-web",
                dir.display()
            )
            .into());
        }
        println!("cargo::rerun-if-changed={}", dir.display());
        walk(&dir, prefix, &mut files)?;
    }
    files.sort();
    let mut table = String::from(
        "/// The web app's files: each path under `/app/` and the file's bytes, sorted by path.\n\
         pub(crate) static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (path, file) in &files {
        let file = file
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", file.display()))?;
        writeln!(table, "    ({path:?}, include_bytes!({file:?})),")?;
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("assets.rs");
    std::fs::write(out, table)?;
    Ok(())
}

/// Adds every file under `dir` to `files` as (`prefix` + its path below `dir`, its path).
fn walk(
    dir: &Path,
    prefix: &str,
    files: &mut Vec<(String, PathBuf)>,
) -> Result<(), Box<dyn Error>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| format!("{}: a name that is not UTF-8", dir.display()))?;
        if name.starts_with('.') {
            continue;
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(format!(
                "{}: web assets are named with A-Z, a-z, 0-9, '.', '_' and '-' only",
                entry.path().display()
            )
            .into());
        }
        let path = format!("{prefix}{name}");
        // A link is followed: include_bytes! reads what it points to.
        if entry.path().is_dir() {
            walk(&entry.path(), &format!("{path}/"), files)?;
        } else {
            files.push((path, entry.path()));
        }
    }
    Ok(())
}
