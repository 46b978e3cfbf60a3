//! Conventions, enforced as tests: every source file starts with a `//!` doc line saying what it
//! is for, has no trailing whitespace or tabs, and the library never calls `unwrap()` outside tests.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(sub: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(sub), &mut files);
    assert!(!files.is_empty(), "no sources under {sub}");
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    for (path, text) in sources("src").into_iter().chain(sources("tests")) {
        assert!(
            text.starts_with("//!"),
            "{}:1: start the file with a `//!` line saying what the module is for",
            path.display()
        );
    }
}

#[test]
fn no_trailing_whitespace_or_tabs() {
    for (path, text) in sources("src").into_iter().chain(sources("tests")) {
        for (i, line) in text.lines().enumerate() {
            assert!(
                !line.ends_with(' ') && !line.contains('\t'),
                "{}:{}: trailing whitespace or a tab",
                path.display(),
                i + 1
            );
        }
    }
}

#[test]
fn library_code_does_not_unwrap() {
    for (path, text) in sources("src") {
        // Only the code before the unit tests counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, line) in code.lines().enumerate() {
            assert!(
                !line.contains(".unwrap()") && !line.contains(".expect("),
                "{}:{}: handle the error (`?`, a default, or a clear message) instead of unwrap/expect",
                path.display(),
                i + 1
            );
        }
    }
}

/// `name==version` lines, sorted, comments and blank lines dropped.
fn pins(text: &str) -> Vec<String> {
    let mut pins: Vec<String> = text
        .lines()
        .map(|line| {
            line.split('#')
                .next()
                .unwrap_or_default()
                .trim()
                .to_lowercase()
        })
        .filter(|line| !line.is_empty())
        .collect();
    pins.sort();
    pins
}

#[test]
fn sams_requirements_txt_pins_what_the_python39_x86_64_lock_pins() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let sam = pins(&read("python-layer/requirements.txt"));
    let lock = pins(&read("python-layer/locks/python3.9-x86_64.txt"));
    assert!(!lock.is_empty());
    assert_eq!(
        sam, lock,
        "python-layer/requirements.txt (what `sam build` installs) differs from the lock the build installs: copy the lock's pins"
    );
}

#[test]
fn the_workflows_cargo_xtask_commands_are_the_readmes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let readme = read("README.md");
    let workflow = read(".github/workflows/layer.yml");
    let commands: Vec<&str> = workflow
        .lines()
        .map(|line| line.trim().trim_start_matches("run: "))
        .filter(|line| line.starts_with("cargo xtask ") || line.starts_with("target/debug/xtask "))
        .collect();
    assert!(commands.len() >= 4, "{commands:?}");
    for command in commands {
        let command = command.split(" >").next().unwrap_or(command);
        let command = command.split(" ||").next().unwrap_or(command).trim();
        assert!(
            readme.contains(command),
            "the workflow runs `{command}`, which README.md does not show"
        );
    }
}

#[test]
fn the_zip_writer_names_the_compression_crates_cargo_lock_builds_it_with() {
    // A rebuild copies compressed entries only from a zip of the same WRITER: another version of
    // these crates may compress differently, so it must be another WRITER.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    for name in ["zip", "flate2", "zlib-rs"] {
        let version = lock
            .split("[[package]]")
            .find_map(|package| {
                let mut lines = package.lines().map(str::trim);
                lines.find(|l| *l == format!("name = \"{name}\""))?;
                lines
                    .find_map(|l| l.strip_prefix("version = \""))
                    .map(|v| v.trim_end_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
        let named = format!("{name} {version}");
        assert!(
            xtask::artifacts::zip::WRITER.contains(&named),
            "Cargo.lock builds {named}, but WRITER is {:?}: check the golden zip and name the new versions",
            xtask::artifacts::zip::WRITER
        );
    }
}
