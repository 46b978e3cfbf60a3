//! Property tests: no input makes the buildspec reader, the linter or the report renderers panic,
//! and every position a diagnostic reports is a real place in its file (line and column from 1, a
//! byte offset inside the text and on a character boundary, a span that does not end before it
//! starts).
//!
//! Inputs: arbitrary bytes (read as lossy UTF-8), a soup of YAML and shell fragments, and the valid
//! corpus (`test_data/buildspecs/valid/`) mutated line by line and character by character.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use xtask::buildspec;
use xtask::diagnostic::{Diagnostic, SourceFile};
use xtask::lint::{self, Options, TemplatePath};
use xtask::report::{self, Format};
use xtask::runtime::Date;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/buildspecs")
}

/// The valid corpus: (file name, text).
fn valid_files() -> &'static [(String, String)] {
    static FILES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = corpus().join("valid");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("readable corpus file");
                (
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    text,
                )
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} has no buildspecs", dir.display());
        files
    })
}

/// The two ways the linter runs: the buildspec alone, and cross-checked against a layer template
/// and a CodeBuild template (so the runtime and layout checks see every mutant too).
fn option_sets() -> [Options; 2] {
    let templates = corpus().join("templates");
    let alone = Options {
        cross_checks: false,
        template: TemplatePath::None,
        codebuild: TemplatePath::None,
        source_root: corpus().join("valid"),
        today: Date::new(2026, 11, 26),
    };
    let cross_checked = Options {
        cross_checks: true,
        template: TemplatePath::Explicit(templates.join("layer-py312.yaml")),
        codebuild: TemplatePath::Explicit(templates.join("codebuild-py311.yaml")),
        ..alone.clone()
    };
    [alone, cross_checked]
}

/// A position a diagnostic reports must exist in the file it names.
fn check_location(d: &Diagnostic) -> Result<(), TestCaseError> {
    let Some(loc) = &d.location else {
        return Ok(());
    };
    let text = &loc.file.text;
    for (end, pos) in [("start", loc.span.start), ("end", loc.span.end)] {
        let what = format!(
            "{} ({}) {end} {pos:?} in {} bytes",
            d.rule.id,
            d.message,
            text.len()
        );
        prop_assert!(
            pos.line >= 1 && pos.col >= 1,
            "line/column below 1: {}",
            what
        );
        prop_assert!(pos.offset <= text.len(), "offset past the end: {}", what);
        prop_assert!(
            text.is_char_boundary(pos.offset),
            "offset inside a character: {}",
            what
        );
    }
    prop_assert!(
        loc.span.start.offset <= loc.span.end.offset,
        "a span that ends before it starts: {:?}",
        d
    );
    Ok(())
}

/// Parses and lints `text` both ways, checks every location, and renders every format.
fn lint_everything(text: &str) -> Result<(), TestCaseError> {
    let parsed = buildspec::parse(SourceFile::new("buildspec.yml", text));
    for options in option_sets() {
        let diagnostics = lint::lint(&parsed, &options);
        for d in &diagnostics {
            check_location(d)?;
        }
        for format in [Format::Human, Format::Json, Format::Sarif] {
            let rendered = report::render(format, &diagnostics, false);
            prop_assert!(!rendered.is_empty());
        }
    }
    Ok(())
}

/// Pieces of buildspecs, YAML syntax and shell syntax, to build plausible-looking nonsense from.
const FRAGMENTS: &[&str] = &[
    "version: 0.2\n",
    "version: 0.1\n",
    "version: 1.0\n",
    "phases:\n",
    "  install:\n",
    "  build:\n",
    "  post_build:\n",
    "    commands:\n",
    "    finally:\n",
    "    runtime-versions:\n",
    "      python: 3.10\n",
    "      python: \"3.12\"\n",
    "    on-failure: RETRY-2-x(\n",
    "    on-failure: RETRY-\n",
    "      - ",
    "echo a: b\n",
    "env:\n",
    "  shell: bash\n",
    "  variables:\n",
    "    CODEBUILD_X: 1\n",
    "    API_TOKEN: ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
    "  exported-variables: [AWS_X]\n",
    "artifacts:\n",
    "  files:\n",
    "    - 'python/**/*'\n",
    "  discard-paths: yes\n",
    "  base-directory: layer/python\n",
    "cache:\n",
    "  key: k\n",
    "reports:\n",
    "  r:\n",
    "    file-format: JUNIT\n",
    "batch:\n",
    "  build-list:\n",
    "  build-graph: x\n",
    "  build-matrix: []\n",
    "    - identifier: a\n",
    "- ",
    "-",
    ": ",
    ":",
    "\n",
    "\r\n",
    "  ",
    "    ",
    "\t",
    "|\n",
    "|-\n",
    ">\n",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "\\",
    "#",
    "&a ",
    "*a",
    "<<: *a\n",
    "!Ref ",
    "!!str ",
    "---\n",
    "...\n",
    "? ",
    "~",
    "null",
    "é",
    "✓",
    "𝄞",
    "\u{feff}",
    "\0",
    "[[ -f x ]] && ",
    "yes | ",
    "read x; ",
    "sam deploy --guided ",
    "aws configure",
    "source ./x.sh; ",
    "cd ../..; ",
    "pip install -r r.txt ",
    "a=(1 2) ",
    "${a[0]} ",
    "$(echo (",
    "&>",
    "<<<",
    "set -o pipefail; ",
    "function f { :; }",
    "{1..3}",
    "bash -lc ",
    "apt-get install ",
];

fn fragment_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..80).prop_map(|parts| parts.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Re-indents a line by this many spaces (negative: removes up to that many).
    Indent(Index, i8),
    InsertChar(Index, char),
    InsertText(Index, &'static str),
    DeleteChars(Index, u8),
    Truncate(Index),
}

/// Characters that change what YAML or the shell lexer sees, plus any character at all.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            ':', '-', ' ', '\t', '\n', '\r', '#', '\'', '"', '|', '>', '[', ']', '{', '}', '&', '*',
            '!', '%', '@', '`', '\\', '$', '(', ')', ';', '<', '?', ',', 'é', '✓', '\u{0}',
        ]),
        1 => any::<char>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<Index>(), -6i8..=6).prop_map(|(i, d)| Mutation::Indent(i, d)),
        (any::<Index>(), interesting_char()).prop_map(|(i, c)| Mutation::InsertChar(i, c)),
        (any::<Index>(), prop::sample::select(FRAGMENTS))
            .prop_map(|(i, t)| Mutation::InsertText(i, t)),
        (any::<Index>(), 1u8..20).prop_map(|(i, n)| Mutation::DeleteChars(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

/// The byte offsets of every character boundary of `text`, its end included.
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect()
}

fn apply(text: &str, mutation: &Mutation) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    match mutation {
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(lines.len()));
        }
        Mutation::DuplicateLine(i) => {
            let i = i.index(lines.len());
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        Mutation::SwapLines(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        Mutation::Indent(i, delta) => {
            let i = i.index(lines.len());
            let line = &mut lines[i];
            if *delta >= 0 {
                line.insert_str(0, &" ".repeat(*delta as usize));
            } else {
                let spaces = line.len() - line.trim_start_matches(' ').len();
                line.drain(..spaces.min(delta.unsigned_abs() as usize));
            }
        }
        Mutation::InsertChar(i, c) => {
            let mut text = lines.concat();
            let at = *i.get(&boundaries(&text));
            text.insert(at, *c);
            return text;
        }
        Mutation::InsertText(i, fragment) => {
            let mut text = lines.concat();
            let at = *i.get(&boundaries(&text));
            text.insert_str(at, fragment);
            return text;
        }
        Mutation::DeleteChars(i, n) => {
            let text = lines.concat();
            let bounds = boundaries(&text);
            let start = i.index(bounds.len());
            let end = (start + *n as usize).min(bounds.len() - 1);
            return format!("{}{}", &text[..bounds[start]], &text[bounds[end]..]);
        }
        Mutation::Truncate(i) => {
            let text = lines.concat();
            let at = *i.get(&boundaries(&text));
            return text[..at].to_string();
        }
    }
    lines.concat()
}

fn mutant() -> impl Strategy<Value = (String, String)> {
    (any::<Index>(), prop::collection::vec(mutation(), 1..6)).prop_map(|(file, mutations)| {
        let (name, text) = file.get(valid_files());
        let mutated = mutations
            .iter()
            .fold(text.clone(), |text, m| apply(&text, m));
        (name.clone(), mutated)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        lint_everything(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yaml_and_shell_fragments_never_panic(text in fragment_soup()) {
        lint_everything(&text)?;
    }

    #[test]
    fn mutated_corpus_files_never_panic((_file, text) in mutant()) {
        lint_everything(&text)?;
    }
}

/// The corpus itself, unmutated, goes through the same checks.
#[test]
fn the_valid_corpus_passes_the_same_checks() {
    for (name, text) in valid_files() {
        if let Err(e) = lint_everything(text) {
            panic!("{name}: {e}");
        }
    }
}
