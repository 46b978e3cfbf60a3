//! Every rule the tool reports, in one catalog: ids are stable (users suppress and search by them),
//! and SARIF output lists them as the tool's rules.

use crate::diagnostic::Severity;

#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable id: BS0xx reading the file, BS1xx buildspec schema, BS2xx cross-file and command checks,
    /// BS3xx the built layer's contents (verify).
    pub id: &'static str,
    /// Short kebab-case name.
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

macro_rules! rules {
    ($($konst:ident = $id:literal $name:literal $sev:ident $summary:literal;)*) => {
        $(pub const $konst: Rule = Rule {
            id: $id, name: $name, severity: Severity::$sev, summary: $summary,
        };)*
        /// All rules, in id order.
        pub const ALL: &[&Rule] = &[$(&$konst),*];
    };
}

rules! {
    UNREADABLE_FILE = "BS001" "unreadable-file" Error "The file could not be read.";
    YAML_SYNTAX = "BS002" "yaml-syntax" Error "The file is not valid YAML.";
    MULTIPLE_DOCUMENTS = "BS003" "multiple-documents" Error "A buildspec is a single YAML document.";
    NOT_A_MAPPING = "BS004" "not-a-mapping" Error "The buildspec must be a YAML mapping.";

    UNKNOWN_KEY = "BS101" "unknown-key" Error "A key CodeBuild does not know (typos included): an unknown phase is an error, any other key a warning (CodeBuild ignores it).";
    WRONG_TYPE = "BS102" "wrong-type" Error "A value of the wrong YAML type.";
    DUPLICATE_KEY = "BS103" "duplicate-key" Error "A key given twice in one mapping; one would silently win.";
    MISSING_KEY = "BS104" "missing-key" Error "A required key is missing (a phase without commands is a warning: CodeBuild runs its finally).";
    EMPTY_COMMANDS = "BS105" "empty-commands" Warning "An empty list (commands, paths): CodeBuild runs it, and nothing happens there.";
    NON_STRING_COMMAND = "BS106" "non-string-command" Error "A command that YAML reads as a mapping or list, not a string.";
    INVALID_VALUE = "BS107" "invalid-value" Error "A value outside what CodeBuild documents: an error where it refuses it (on-failure, yes/no), a warning where real projects run it (shells, runtimes, report formats).";
    UNSUPPORTED_VERSION = "BS108" "unsupported-version" Error "The buildspec version is not 0.2 (or legacy 0.1).";
    LEGACY_VERSION = "BS109" "legacy-version" Warning "Version 0.1 runs every command in its own shell.";
    MISPLACED_RUNTIME_VERSIONS = "BS110" "misplaced-runtime-versions" Error "runtime-versions is only allowed in the install phase.";
    RESERVED_VARIABLE = "BS111" "reserved-variable" Warning "Variable names starting with CODEBUILD_ are reserved (the documentation says so; CodeBuild runs them).";
    FLOAT_VERSION = "BS112" "float-version" Warning "An unquoted version YAML reads as a number (3.10 becomes 3.1).";
    NOT_EXPORTABLE = "BS113" "not-exportable" Warning "Variables starting with AWS_ are not exported.";
    BATCH_CONFLICT = "BS114" "batch-conflict" Error "A batch uses exactly one of build-list, build-matrix, build-graph.";
    INVALID_IDENTIFIER = "BS115" "invalid-artifact-identifier" Error "A secondary artifact identifier that is not letters, digits and underscores.";

    RUNTIME_TEMPLATE_MISMATCH = "BS201" "runtime-template-mismatch" Error "runtime-versions python differs from the layer's CompatibleRuntimes.";
    RUNTIME_IMAGE_MISMATCH = "BS202" "runtime-image-mismatch" Error "runtime-versions python differs from the build image's Python.";
    DEPRECATED_RUNTIME = "BS203" "deprecated-runtime" Warning "A Lambda runtime past its deprecation date.";
    LAYER_LAYOUT = "BS204" "layer-layout" Error "The artifact does not put python/ at the zip root.";
    MISSING_FILE = "BS205" "missing-file" Error "A file the commands use does not exist in the source.";
    INTERACTIVE_HAZARD = "BS206" "interactive-hazard" Error "A command that waits for input or hides prompts.";
    BASH_ONLY_SYNTAX = "BS207" "bash-only-syntax" Warning "Bash-only syntax while the shell is sh.";
    PLAINTEXT_SECRET = "BS208" "plaintext-secret" Warning "A likely secret in plain env.variables.";
    TEMPLATE_PROBLEM = "BS209" "template-problem" Warning "A template the cross-checks need is unreadable or has no layer.";
    PUBLISH_IN_BUILD = "BS210" "publish-in-build" Warning "Publishing from inside the build needs AWS credentials in the build.";
    SHELL_SYNTAX = "BS211" "shell-syntax" Error "A command the shell cannot parse: an unterminated quote, `$(`, heredoc, or an unclosed if/for/case/{/(.";
    LOCAL_DEVIATION = "BS212" "local-deviation" Warning "Where a local build cannot do exactly what CodeBuild does, one line says how it differs.";

    ELF_ARCHITECTURE = "BS301" "elf-architecture" Error "A native file built for another CPU than the layer's CompatibleArchitectures.";
    GLIBC_TOO_NEW = "BS302" "glibc-too-new" Error "A native file needs a newer glibc than a target runtime's OS has.";
    MUSL_LINKED = "BS303" "musl" Error "A native file linked against musl libc, which Lambda's OS does not have.";
    ABI_MISMATCH = "BS304" "abi-mismatch" Error "A CPython extension module built for another Python version than a target runtime.";
    WHEEL_TAG_MISMATCH = "BS305" "wheel-tag-mismatch" Error "An installed wheel whose tags fit no target runtime or architecture.";
    LAYER_TREE_LAYOUT = "BS306" "layout" Error "Packages outside the paths Lambda puts on sys.path (python/, python/lib/python3.X/site-packages).";
    PYCACHE_MISMATCH = "BS307" "pycache-mismatch" Warning "Bytecode compiled for a Python version no target runtime uses.";
    BLOAT = "BS308" "bloat" Warning "Tests, docs or examples shipped in the layer.";
    SHADOWS_RUNTIME_SDK = "BS309" "shadows-runtime-sdk" Warning "boto3/botocore in the layer shadow the copy the runtime provides.";
    IMPORT_FAILED = "BS310" "import-failed" Error "A top-level module of the layer does not import with only the layer on sys.path.";
    LAYER_TOO_LARGE = "BS311" "layer-too-large" Error "The layer unzipped is over Lambda's 262,144,000-byte limit for a function and all its layers.";
    OVER_INLINE_LIMIT = "BS312" "over-inline-limit" Warning "The zip is over 52,428,800 bytes: it cannot be uploaded inline and goes through S3.";
}

#[cfg(test)]
mod tests {
    use super::ALL;

    #[test]
    fn ids_and_names_are_unique_and_ordered() {
        for pair in ALL.windows(2) {
            assert!(
                pair[0].id < pair[1].id,
                "{} before {}",
                pair[0].id,
                pair[1].id
            );
        }
        let mut names: Vec<_> = ALL.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
