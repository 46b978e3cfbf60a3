//! Reads what the driver prints: ordinary lines go to the log (secrets masked there), marker
//! lines become phase results and exported variables. Bounded: a line longer than
//! [`MAX_LINE_BYTES`] is cut into pieces, and each byte is looked at once, whatever arrives.

use super::super::driver::{self, Marker};
use super::super::execute::PhaseResult;
use super::super::log::Log;
use crate::buildspec::PhaseName;

/// The longest line kept whole; longer output without a newline is logged in pieces.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// At most this many exported variables are taken from the markers.
const MAX_EXPORTS: usize = 1000;

/// What the driver reported about the build.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DriverReport {
    pub phases: Vec<PhaseResult>,
    pub exported: Vec<(String, Option<String>)>,
    /// From the `build end` marker; `None` when the shell died before printing it.
    pub build_succeeded: Option<bool>,
    /// Whether a command said it ran out of space (an in-memory source tree is bounded).
    pub saw_no_space: bool,
}

/// Turns the driver's output stream into log lines and a [`DriverReport`].
pub struct OutputReader<'a> {
    log: &'a Log,
    token: &'a str,
    pending: Vec<u8>,
    starts: Vec<(PhaseName, u64)>,
    pub report: DriverReport,
}

impl<'a> OutputReader<'a> {
    pub fn new(log: &'a Log, token: &'a str) -> Self {
        OutputReader {
            log,
            token,
            pending: Vec::new(),
            starts: Vec::new(),
            report: DriverReport::default(),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            let (line, rest) = chunk.split_at(end);
            self.push(line);
            let whole = std::mem::take(&mut self.pending);
            self.line(&whole);
            chunk = &rest[1..];
        }
        self.push(chunk);
    }

    /// Appends to the pending line, logging full pieces of an overlong one.
    fn push(&mut self, mut bytes: &[u8]) {
        while self.pending.len() + bytes.len() > MAX_LINE_BYTES {
            let room = MAX_LINE_BYTES - self.pending.len();
            self.pending.extend_from_slice(&bytes[..room]);
            let piece = std::mem::take(&mut self.pending);
            self.line(&piece);
            bytes = &bytes[room..];
        }
        self.pending.extend_from_slice(bytes);
    }

    pub fn finish(mut self) -> DriverReport {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest);
        }
        self.report
    }

    fn line(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let line = text.trim_end_matches('\r');
        match driver::parse_marker(line, self.token) {
            Some(marker) => self.marker(marker),
            None => {
                self.report.saw_no_space |= line.contains("No space left on device");
                self.log.line(line);
            }
        }
    }

    fn marker(&mut self, marker: Marker) {
        let report = &mut self.report;
        match marker {
            Marker::PhaseStart { phase, at_ms } => self.starts.push((phase, at_ms)),
            Marker::PhaseEnd {
                phase,
                succeeded,
                at_ms,
            } => {
                let start = self
                    .starts
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == phase)
                    .map_or(at_ms, |s| s.1);
                report.phases.retain(|p| p.phase != phase);
                report.phases.push(PhaseResult {
                    phase,
                    succeeded,
                    duration_ms: at_ms.saturating_sub(start),
                });
            }
            Marker::Export { name, value } if report.exported.len() < MAX_EXPORTS => {
                report.exported.push((name, value))
            }
            Marker::Export { .. } | Marker::PhaseRetry { .. } => {}
            Marker::BuildEnd { succeeded } => report.build_succeeded = Some(succeeded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_become_the_report_and_long_lines_are_cut() {
        let log = Log::new(true);
        let mut reader = OutputReader::new(&log, "tok");
        reader.feed(b"##xtask tok phase BUILD start 1000\nhello\n##xtask tok phase BU");
        reader.feed(
            b"ILD end SUCCEEDED 1500\n##xtask build end FAILED\n##xtask tok build end SUCCEEDED\n",
        );
        reader.feed(&vec![b'x'; MAX_LINE_BYTES * 3 + 5]);
        assert!(reader.pending.len() <= MAX_LINE_BYTES);
        let report = reader.finish();
        assert_eq!(report.build_succeeded, Some(true));
        assert_eq!(
            report.phases,
            [PhaseResult {
                phase: PhaseName::Build,
                succeeded: true,
                duration_ms: 500
            }]
        );
    }
}
