//! Following a CodeBuild build's CloudWatch log: the lines that arrived since the last poll,
//! printed as a local build's are, within a bound per poll, with control characters defused.

use std::time::Duration;

use super::super::log::Log;
use crate::aws::{self, Failure};

/// Log pages read per poll: a build that logs without pause cannot keep the poll from its checks.
const MAX_PAGES_PER_POLL: usize = 20;

/// Where the build's log has been read up to.
#[derive(Default)]
pub struct LogCursor {
    token: Option<String>,
    /// Whether a failure to read it has been said (once).
    warned: bool,
}

impl LogCursor {
    /// Prints the log events that arrived since the last call and returns how many lines. A
    /// stream that does not exist yet (the build has not started) is tried again at the next
    /// poll; another failure (no `logs:GetLogEvents`) is said once.
    pub async fn drain(
        &mut self,
        logs: &aws_sdk_cloudwatchlogs::Client,
        config: &aws_sdk_codebuild::types::LogsLocation,
        log: &Log,
    ) -> usize {
        let (Some(group), Some(stream)) = (config.group_name(), config.stream_name()) else {
            return 0;
        };
        let mut printed = 0;
        for _ in 0..MAX_PAGES_PER_POLL {
            let page = logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(self.token.clone())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let not_yet = matches!(aws::classify(&e), Failure::NotFound);
                    if !not_yet && !self.warned {
                        self.warned = true;
                        let what = format!("the log stream {group}/{stream}");
                        let error = aws::explain(&e, "logs:GetLogEvents", &what);
                        log.warning(&format!("the build's log cannot be read: {error:#}"));
                    }
                    return printed;
                }
            };
            for event in page.events() {
                for line in event.message().unwrap_or_default().lines() {
                    log.line(&printable(line));
                    printed += 1;
                }
            }
            let next = page.next_forward_token().map(str::to_string);
            if next.is_none() || next == self.token {
                return printed;
            }
            self.token = next;
        }
        printed
    }

    /// After the build completed: CloudWatch delivers its last lines (often the failing
    /// command's) a moment later; reads until a poll brings nothing, for at most 10 s.
    pub async fn drain_the_rest(
        &mut self,
        logs: &aws_sdk_cloudwatchlogs::Client,
        config: &aws_sdk_codebuild::types::LogsLocation,
        log: &Log,
    ) {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if self.drain(logs, config, log).await == 0 {
                return;
            }
        }
    }
}

/// A line of the build's log as it may be printed: control characters (escape sequences, a
/// carriage return that would overwrite the tool's own lines) become `?`.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_cannot_rewrite_the_terminal() {
        assert_eq!(super::printable("ok\tdone"), "ok\tdone");
        assert_eq!(
            super::printable("x\r\u{1b}[2Kup to date: fake"),
            "x??[2Kup to date: fake"
        );
    }
}
