//! Rendering: the plan table and the live progress of a run (indicatif
//! spinners on a terminal, plain lines otherwise).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::dag::{Decision, Plan};
use crate::exec::Event;

/// The plan as a table: action, stage, and why.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let width = plan.nodes.iter().map(|n| n.label().chars().count()).max().unwrap_or(0);
    for n in plan.nodes.iter().filter(|n| n.selected) {
        let (action, why) = match &n.decision {
            Decision::Cached { key, .. } => ("cached", key.short().to_string()),
            // What is missing, one located line each: the user fixes them
            // one by one.
            Decision::Run { reasons, .. } if !n.runnable => {
                let pad = format!("\n  {:<7}  {:<width$}  ", "", "");
                let lines: Vec<String> =
                    reasons.iter().map(|r| r.to_string().trim_start_matches("cannot run yet: ").to_string()).collect();
                ("cannot", lines.join(&pad))
            }
            Decision::Run { reasons, .. } => {
                ("run", reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "))
            }
        };
        out.push_str(&format!("  {action:<7}  {:<width$}  {why}\n", n.label()));
        // A node several variants share: which ones, by their values.
        if n.variants.len() > 1 && n.variants.len() < plan.variants.len() {
            out.push_str(&format!("  {:<7}  {:<width$}  shared by {}\n", "", "", n.variants.join(" | ")));
        }
    }
    out
}

/// The cost forecast of the stages a plan would run (nothing when none
/// would).
pub fn forecast_text(plan: &Plan, forecast: &[crate::dag::forecast::Estimate]) -> String {
    use crate::dag::forecast::Estimate;
    if forecast.iter().all(|f| *f == Estimate::Nothing) {
        return String::new();
    }
    let width = plan.nodes.iter().map(|n| n.label().chars().count()).max().unwrap_or(0);
    let mut out = String::from("forecast, from what earlier artifacts of the same kinds in this store took:\n");
    let (mut wall, mut node_hours, mut open) = (0.0, 0.0, 0usize);
    for (n, f) in plan.nodes.iter().zip(forecast) {
        let text = match f {
            Estimate::Nothing => continue,
            Estimate::NoHistory => {
                open += 1;
                "no history".to_string()
            }
            Estimate::RowsUnknown { upstream } => {
                open += 1;
                format!("its input's size is known once {upstream} ran")
            }
            Estimate::Cost { rows_in, seconds_per_row, wall_s, node_hours: nh, tokens, from } => {
                wall += wall_s;
                node_hours += nh;
                let tokens = tokens.map(|t| format!(", ≈ {} model tokens", count(t))).unwrap_or_default();
                format!(
                    "{rows_in} rows: ≈ {} wall, ≈ {nh:.2} node-hours{tokens} ({seconds_per_row:.3} s per row and shard, from {from} artifact(s))",
                    duration(*wall_s)
                )
            }
        };
        out.push_str(&format!("  {:<width$}  {text}\n", n.label()));
    }
    if open == out.lines().count() - 1 {
        out.push_str("no forecast yet: no earlier artifact of these kinds in this store\n");
        return out;
    }
    let more = if open > 0 { format!(" (and {open} stage(s) not forecast)") } else { String::new() };
    out.push_str(&format!(
        "≈ {node_hours:.2} node-hours; ≈ {} wall with the stages one after another{more}\n",
        duration(wall)
    ));
    out
}

fn duration(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

fn count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1} G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// Whether spinners can be drawn: on a terminal that can move the cursor
/// (`TERM` set and not `dumb`: Emacs shells, some batch consoles).
fn can_draw(is_terminal: bool, term: Option<&str>) -> bool {
    is_terminal && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// Turns executor events into terminal output.
pub struct Reporter {
    multi: MultiProgress,
    bars: HashMap<usize, ProgressBar>,
    fancy: bool,
    pub committed: usize,
    pub cached: usize,
    pub early_cutoff: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: usize,
}

impl Reporter {
    pub fn new() -> Reporter {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        // The library draws nothing (and prints nothing through it) on the
        // terminals it cannot draw on, so any doubt means plain lines.
        let term = std::env::var("TERM").ok();
        let fancy = can_draw(std::io::stderr().is_terminal(), term.as_deref()) && !multi.is_hidden();
        if !fancy {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Reporter {
            multi,
            bars: HashMap::new(),
            fancy,
            committed: 0,
            cached: 0,
            early_cutoff: 0,
            failed: 0,
            skipped: 0,
            interrupted: 0,
        }
    }

    fn line(&self, text: String) {
        // println fails only when the draw target is gone; the line must not.
        if !self.fancy || self.multi.println(&text).is_err() {
            eprintln!("{text}");
        }
    }

    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Cached { label, key, early_cutoff, by, .. } => {
                self.cached += 1;
                if let Some(run) = by {
                    self.line(format!("  cached   {label}  {} (computed by run {run} meanwhile)", key.short()));
                } else if early_cutoff {
                    self.early_cutoff += 1;
                    self.line(format!("  cached   {label}  {} (upstream output unchanged)", key.short()));
                }
            }
            Event::Started { node, label, reasons, shards, resumed, .. } => {
                let mut why = reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ");
                if shards > 1 {
                    why.push_str(&format!("; {shards} shards"));
                }
                if resumed > 0 {
                    why.push_str(&format!(", {resumed} already done"));
                }
                if self.fancy {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("static template"),
                    );
                    bar.set_message(format!("running  {label}"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert(node, bar);
                } else {
                    self.line(format!("  running  {label}  ({why})"));
                }
            }
            Event::ShardDone { label, shard, left, .. } => {
                if !self.fancy {
                    self.line(format!("  shard    {label}  #{shard} done, {left} left"));
                }
            }
            Event::Committed { node, label, rows, bytes, seconds, summary, .. } => {
                self.committed += 1;
                if let Some(bar) = self.bars.remove(&node) {
                    bar.finish_and_clear();
                }
                let more = summary.map(|s| format!("; {s}")).unwrap_or_default();
                self.line(format!("  done     {label}  {rows} rows, {}, {seconds:.1}s{more}", super::bytes(bytes)));
            }
            Event::Failed { node, label, error, log_tail, log } => {
                self.failed += 1;
                if let Some(bar) = self.bars.remove(&node) {
                    bar.finish_and_clear();
                }
                let mut text = format!("  FAILED   {label}: {error}");
                if !log_tail.trim().is_empty() {
                    text.push_str("\n  --- stderr (last lines) ---\n");
                    for l in log_tail.lines() {
                        text.push_str(&format!("  | {l}\n"));
                    }
                    text.push_str("  ---");
                }
                if !log.as_os_str().is_empty() {
                    text.push_str(&format!("\n  log: {}", log.display()));
                }
                self.line(text);
            }
            Event::Skipped { label, because, .. } => {
                self.skipped += 1;
                self.line(format!("  skipped  {label}  ({because})"));
            }
            Event::Interrupted { node, label } => {
                self.interrupted += 1;
                if let Some(bar) = self.bars.remove(&node) {
                    bar.finish_and_clear();
                }
                self.line(format!("  stopped  {label}  (interrupted; nothing committed)"));
            }
            Event::Waiting { label, holder, .. } => self.line(format!("  waiting  {label}  for {holder}")),
            Event::Stopping => self.line("  interrupt: stopping running stages...".to_string()),
            Event::Note { label, text, .. } => self.line(format!("  note     {label}  {text}")),
            Event::StoreError { what, error } => self.line(format!("  ERROR    cannot write {what}: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spinners_only_where_the_terminal_can_draw_them() {
        let cases = [
            (true, Some("xterm-256color"), true),
            (true, Some("screen"), true),
            (true, Some("dumb"), false),
            (true, Some(""), false),
            (true, None, false),
            (false, Some("xterm"), false),
        ];
        for (tty, term, want) in cases {
            assert_eq!(super::can_draw(tty, term), want, "{tty} {term:?}");
        }
    }
}
