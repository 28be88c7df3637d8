//! The progress bar on stderr (indicatif): preload, warmup, then the measured
//! run. Hidden when stderr is not a terminal or the result is JSON, so
//! redirected output and scripts see only the report.

use indicatif::{ProgressBar, ProgressStyle};

/// A cheap handle: clones drive the same bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(visible: bool) -> Progress {
        let bar = if visible {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {percent:>3}%  {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar }
    }

    /// Starts a phase that is done at `len` (milliseconds or requests).
    pub fn phase(&self, name: &'static str, len: u64) {
        self.bar.set_prefix(name);
        self.bar.set_length(len.max(1));
        self.bar.set_position(0);
    }

    pub fn update(&self, pos: u64, msg: String) {
        self.bar.set_position(pos);
        self.bar.set_message(msg);
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
