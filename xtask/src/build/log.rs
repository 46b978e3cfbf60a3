//! The build's log: CodeBuild-style lines to the terminal (stderr when stdout carries JSON), every
//! line through the secret mask, whoever wrote it (the container, a warning, an error message).

use std::io::Write as _;

use super::variables::Masker;

/// Where a build's log lines go.
#[derive(Debug, Clone, Default)]
pub struct Log {
    json: bool,
    masker: Masker,
    /// `[python3.13-arm64] `: the cells of a matrix log side by side.
    prefix: String,
}

impl Log {
    /// Lines go to stdout, or to stderr when stdout carries `--json`.
    pub fn new(json: bool) -> Log {
        Log {
            json,
            masker: Masker::default(),
            prefix: String::new(),
        }
    }

    /// This log, each line starting with `[cell] ` when `cell` is given.
    pub fn for_cell(self, cell: Option<&str>) -> Log {
        let prefix = cell.map_or_else(String::new, |cell| format!("[{cell}] "));
        Log { prefix, ..self }
    }

    /// This log, masking `masker`'s secrets from now on.
    pub fn masking(self, masker: Masker) -> Log {
        Log { masker, ..self }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// One line, secrets masked.
    pub fn line(&self, text: &str) {
        let text = self.masker.mask(text);
        let prefix = &self.prefix;
        if self.json {
            let _ = writeln!(std::io::stderr(), "{prefix}{text}");
        } else {
            let _ = writeln!(std::io::stdout(), "{prefix}{text}");
        }
    }

    /// `[Container] <timestamp> text`, as CodeBuild's agent logs its own steps.
    pub fn container(&self, text: &str) {
        self.line(&format!("[Container] {} {text}", timestamp()));
    }

    pub fn warning(&self, text: &str) {
        self.line(&format!("warning: {text}"));
    }
}

/// CodeBuild's timestamp for `[Container]` lines, now.
pub fn timestamp() -> String {
    crate::util::UtcTime::now().codebuild_log()
}
