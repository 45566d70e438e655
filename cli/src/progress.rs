//! Progress of long work on stderr (`ekms bench`, `ekms import-key`, `ekms unseal`), drawn only
//! when stderr is a terminal: through a pipe, into a log file or under a test nothing is drawn,
//! and stdout (each command's JSON or table) is never touched. Bars are cleared when the work
//! ends, so a terminal shows the same final output as a pipe.

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// How often a spinner turns, and a timed bar is redrawn, on its own.
const TICK: Duration = Duration::from_millis(120);

/// Whether progress is drawn: stderr is a terminal.
pub fn shown() -> bool {
    std::io::stderr().is_terminal()
}

fn draw_target(shown: bool) -> ProgressDrawTarget {
    if shown {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A template of this module's own; a constant that does not parse would show as indicatif's
/// default style rather than fail the command.
fn style(template: &str, default: ProgressStyle) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or(default)
}

/// A spinner with the elapsed time and `message`, turning on its own; hidden unless `shown`.
/// Dropped unfinished (the work failed), it clears itself before the error is printed.
pub fn spinner(shown: bool, message: impl Into<Cow<'static, str>>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target(shown))
        .with_finish(ProgressFinish::AndClear);
    bar.set_style(style(
        "{spinner} {elapsed:>4} {msg}",
        ProgressStyle::default_spinner(),
    ));
    bar.set_message(message);
    if shown {
        bar.enable_steady_tick(TICK);
    }
    bar
}

/// A bar over `total` of wall time (the caller moves it, in milliseconds), with a prefix (what
/// runs) and a message (its figures); hidden unless `shown`.
pub fn timed(shown: bool, total: Duration) -> ProgressBar {
    let millis = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
    let bar = ProgressBar::with_draw_target(Some(millis), draw_target(shown))
        .with_finish(ProgressFinish::AndClear);
    bar.set_style(
        style(
            "{spinner} {elapsed:>4} [{bar:30}] {prefix}: {msg}",
            ProgressStyle::default_bar(),
        )
        .progress_chars("=> "),
    );
    if shown {
        bar.enable_steady_tick(TICK);
    }
    bar
}

/// A count with thousands separators (`1,234,567`), as the figures read in a terminal.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not on a terminal, nothing is drawn: the bars are hidden, whatever they are told.
    #[test]
    fn hidden_unless_shown() {
        let spinner = spinner(false, "working");
        spinner.set_message("still working");
        assert!(spinner.is_hidden());
        let bar = timed(false, Duration::from_secs(10));
        bar.set_position(5_000);
        assert!(bar.is_hidden());
        assert_eq!(bar.length(), Some(10_000));
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
