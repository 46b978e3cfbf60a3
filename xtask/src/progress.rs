//! Progress for long steps (image pulls): a bar on a terminal, a few plain lines otherwise, so CI
//! logs stay readable.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    last_status: Mutex<String>,
    quiet: bool,
}

impl Progress {
    /// `quiet`: print nothing on stdout (JSON mode); progress then goes to stderr only as a bar.
    pub fn new(quiet: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {bytes}/{total_bytes}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            last_status: Mutex::new(String::new()),
            quiet,
        }
    }

    pub fn update(&self, status: &str, current: Option<u64>, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            bar.set_message(status.to_string());
            if let (Some(current), Some(total)) = (current, total) {
                bar.set_length(total);
                bar.set_position(current);
            }
            bar.tick();
            return;
        }
        // Without a terminal: one line per change of status, not per byte.
        if let Ok(mut last) = self.last_status.lock() {
            if *last != status && !self.quiet {
                eprintln!("{status}");
                *last = status.to_string();
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
