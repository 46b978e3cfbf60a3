//! The build's log: CodeBuild-style lines to the terminal (stderr when stdout carries JSON), and
//! the reader of the driver's output that strips its marker lines into the summary and masks
//! secret values.

use super::summary::{PhaseResult, Summary};
use super::variables;
use crate::buildspec::PhaseName;
use crate::plan::{self, Marker};

/// Where the build's log lines go: the terminal, or stderr when stdout carries JSON.
pub fn log(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// CodeBuild's timestamp for `[Container]` lines, now.
pub fn timestamp() -> String {
    crate::util::UtcTime::now().codebuild_log()
}

/// Reads the driver's output: log lines to the terminal (secrets masked), marker lines into the
/// summary.
pub struct OutputReader<'a> {
    json: bool,
    secrets: &'a [String],
    pending: Vec<u8>,
    starts: Vec<(PhaseName, u64)>,
    pub summary: Summary,
    pub build_succeeded: Option<bool>,
    /// Whether a command said it ran out of space (an in-memory source tree is bounded).
    pub saw_no_space: bool,
}

impl<'a> OutputReader<'a> {
    pub fn new(json: bool, secrets: &'a [String]) -> Self {
        OutputReader {
            json,
            secrets,
            pending: Vec::new(),
            starts: Vec::new(),
            summary: Summary::default(),
            build_succeeded: None,
            saw_no_space: false,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'));
        }
    }

    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&String::from_utf8_lossy(&rest));
        }
    }

    fn line(&mut self, line: &str) {
        match plan::parse_marker(line) {
            Some(Marker::PhaseStart { phase, at_ms }) => self.starts.push((phase, at_ms)),
            Some(Marker::PhaseEnd {
                phase,
                succeeded,
                at_ms,
            }) => {
                let start = self
                    .starts
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == phase)
                    .map_or(at_ms, |s| s.1);
                self.summary.phases.retain(|p| p.phase != phase);
                self.summary.phases.push(PhaseResult {
                    phase,
                    succeeded,
                    duration_ms: at_ms.saturating_sub(start),
                });
            }
            Some(Marker::Export { name, value }) => self.summary.exported.push((name, value)),
            Some(Marker::BuildEnd { succeeded }) => self.build_succeeded = Some(succeeded),
            Some(Marker::PhaseRetry { .. }) => {}
            None => {
                self.saw_no_space |= line.contains("No space left on device");
                log(self.json, &variables::mask(line, self.secrets))
            }
        }
    }
}
