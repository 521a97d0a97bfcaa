//! `swestar view`: one trajectory (rollout, test_filter, swebench_eval) or
//! one training sample (segment) as a readable, self-contained HTML page,
//! and `--list` to find the interesting ones.
//!
//! A trajectory page shows the task, each turn's thought and tool call,
//! each observation with its token count and the turn from which the
//! stage's masking policy hid it (replayed from the recorded token counts
//! with the stage's window, reserve and policy), the final patch, and the
//! verdict with per-test statuses from the row itself (test_filter,
//! swebench_eval) or from a test_filter stage that graded this rollout.
//! A sample page shows exactly the messages the student is trained on,
//! the trainable turns marked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value};

use super::inspect::find_nodes;
use super::{build_plan, html as esc, load, store_dir, Exit};
use crate::agent::condense::{Budget, Policy};
use crate::agent::episode::{Trajectory, Turn, View, Window};
use crate::agent::tokens::TokenCounter;
use crate::dag::Plan;
use crate::store::{Manifest, Store, TableFormat};

#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// The stage whose rows to show (rollout, test_filter, swebench_eval
    /// or segment).
    stage: String,
    /// Override a value: a dotted path into the TOML (as the run had it).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The variant, where the stage differs between variants.
    #[arg(long)]
    variant: Option<String>,
    /// The instance to show (default: the first row's).
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// Which attempt at the instance (default: its first).
    #[arg(long, value_name = "N")]
    attempt: Option<u64>,
    /// Which segment of a segmented trajectory (segment stages; default 0).
    #[arg(long, value_name = "N")]
    segment: Option<u64>,
    /// Print one line per row (instance, attempt, turns, exit reason,
    /// verdict) instead of writing a page.
    #[arg(long, conflicts_with = "output")]
    list: bool,
    /// Where to write the HTML page.
    #[arg(short, long, value_name = "FILE", required_unless_present = "list")]
    output: Option<PathBuf>,
}

type Row = Map<String, Value>;
/// Rows a filter graded, by (instance, attempt): the filter's stage and the row.
type Graded = BTreeMap<(String, u64), (String, Row)>;

fn read(store: &Store, m: &Manifest, columns: Option<&[&str]>) -> Result<Vec<Row>, Exit> {
    let rows = crate::store::rows::read_all_columns(&store.part_paths(m), TableFormat::Parquet, columns)
        .map_err(|e| Exit::failed(format!("error: reading stage {}: {e}", m.stage)))?;
    Ok(rows.into_iter().filter_map(|r| if let Value::Object(o) = r { Some(o) } else { None }).collect())
}

fn s<'a>(r: &'a Row, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn u(r: &Row, k: &str) -> u64 {
    r.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// A row's verdict in words: resolved or not, from its own test run.
fn verdict(r: &Row) -> Option<String> {
    let resolved = r.get("resolved")?.as_bool()?;
    Some(if resolved { "resolved".into() } else { format!("not resolved ({})", s(r, "resolution")) })
}

pub fn view(store_flag: Option<&Path>, args: ViewArgs) -> Result<ExitCode, Exit> {
    let loaded = load(&args.workflow, &args.sets)?;
    let dir = store_dir(store_flag, Some(&loaded));
    let store = Store::existing(&dir)
        .ok_or_else(|| Exit::failed(format!("error: no store at {} (nothing has run yet)", dir.display())))?;
    let plan = build_plan(&loaded, Some(&store))?;
    let variants: Vec<String> = args.variant.iter().cloned().collect();
    let node = find_nodes(&plan, &args.workflow, &args.stage, &variants, false)?[0];
    let i = plan.nodes.iter().position(|n| std::ptr::eq(n, node)).expect("a node of the plan");
    let kind = node.spec.kind.name();
    if !matches!(kind, "rollout" | "test_filter" | "swebench_eval" | "segment") {
        return Err(Exit::invalid(format!(
            "error: stage `{}` is a {kind} stage; view shows trajectories (rollout, test_filter, swebench_eval) and training samples (segment)",
            args.stage
        )));
    }
    let manifest = plan.nodes[i].decision.manifest().ok_or_else(|| {
        Exit::failed(format!(
            "error: stage `{}` has no artifact for the current settings yet (run it first)",
            args.stage
        ))
    })?;
    let sample = kind == "segment";
    let light: &[&str] = if sample {
        &["instance_id", "attempt", "segment", "segments", "tokens", "trainable_tokens"]
    } else if kind == "rollout" {
        &["instance_id", "attempt", "steps", "exit_reason", "prompt_tokens", "completion_tokens"]
    } else {
        &["instance_id", "attempt", "steps", "exit_reason", "resolved", "resolution"]
    };
    let graded = if kind == "rollout" { filter_verdicts(&plan, i, &store)? } else { BTreeMap::new() };
    if args.list {
        let rows = read(&store, manifest, Some(light))?;
        for r in &rows {
            let id = s(r, "instance_id");
            let attempt = u(r, "attempt");
            if sample {
                println!(
                    "{id}  attempt {attempt}  segment {}/{}  {} tokens  {} trainable",
                    u(r, "segment"),
                    u(r, "segments"),
                    u(r, "tokens"),
                    u(r, "trainable_tokens")
                );
            } else {
                let v = verdict(r)
                    .or_else(|| {
                        graded.get(&(id.to_string(), attempt)).map(|(st, r)| verdict(r).unwrap_or(st.to_string()))
                    })
                    .unwrap_or_else(|| if graded.is_empty() { "-".into() } else { "not kept by the filter".into() });
                println!("{id}  attempt {attempt}  {} turns  {}  {v}", u(r, "steps"), s(r, "exit_reason"));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows = read(&store, manifest, None)?;
    let chosen = rows
        .iter()
        .find(|r| {
            args.instance.as_deref().is_none_or(|id| s(r, "instance_id") == id)
                && args.attempt.is_none_or(|a| u(r, "attempt") == a)
                && (!sample || u(r, "segment") == args.segment.unwrap_or(0))
        })
        .ok_or_else(|| {
            let ids: Vec<&str> = rows.iter().map(|r| s(r, "instance_id")).collect();
            let hint = args
                .instance
                .as_deref()
                .and_then(|id| crate::workflow::did_you_mean(id, ids))
                .map(|x| format!(" (did you mean `{x}`?)"))
                .unwrap_or_default();
            Exit::invalid(format!(
                "error: no row of `{}` with{}{}{}{hint}; `--list` shows them",
                args.stage,
                args.instance.as_deref().map(|x| format!(" instance {x}")).unwrap_or_default(),
                args.attempt.map(|x| format!(" attempt {x}")).unwrap_or_default(),
                if sample { format!(" segment {}", args.segment.unwrap_or(0)) } else { String::new() },
            ))
        })?;
    let title = format!(
        "{} · {} · attempt {}{}",
        plan.nodes[i].label(),
        s(chosen, "instance_id"),
        u(chosen, "attempt"),
        if sample {
            format!(" · segment {} of {}", u(chosen, "segment") + 1, u(chosen, "segments"))
        } else {
            String::new()
        }
    );
    let body = if sample {
        sample_body(chosen)
    } else {
        let masking = masking_of(manifest);
        let from_filter = graded.get(&(s(chosen, "instance_id").to_string(), u(chosen, "attempt")));
        trajectory_body(chosen, masking, from_filter, !graded.is_empty())
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n{body}</body></html>\n",
        t = esc(&title)
    );
    let out = args.output.expect("required without --list");
    crate::store::write_atomic(&out, html.as_bytes())
        .map_err(|e| Exit::failed(format!("error: cannot write {}: {e}", out.display())))?;
    eprintln!("wrote {} ({title})", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The stage's masking settings from its manifest: window, reserve, policy.
fn masking_of(m: &Manifest) -> Option<(Budget, Policy)> {
    let model = m.preimage.definition.get("model")?;
    let window = model.get("context_window")?.as_u64()? as usize;
    let reserve = model.get("reply_reserve")?.as_u64()? as usize;
    let policy: Policy = serde_json::from_value(model.get("masking")?.clone()).ok()?;
    Some((Budget { window, reserve }, policy))
}

/// The rows a test_filter stage graded from this rollout, by (instance,
/// attempt), with the stage's name.
fn filter_verdicts(plan: &Plan, rollout: usize, store: &Store) -> Result<Graded, Exit> {
    let mut out = BTreeMap::new();
    for (j, n) in plan.nodes.iter().enumerate() {
        if n.spec.kind.name() != "test_filter" || !n.upstream.iter().any(|e| e.node == rollout) {
            continue;
        }
        let Some(m) = plan.nodes[j].decision.manifest() else { continue };
        for r in read(store, m, Some(&["instance_id", "attempt", "resolved", "resolution", "tests", "test_error"]))? {
            out.insert((s(&r, "instance_id").to_string(), u(&r, "attempt")), (n.stage.clone(), r));
        }
    }
    Ok(out)
}

/// From which turn (1-based: the n-th model call) each message was masked,
/// replaying the scaffold's own window over the recorded token counts;
/// `None` for one never masked. Only the placeholder is counted anew (by
/// estimate: the stage's tokenizer need not be at hand).
fn replay_masking(messages: &[Row], budget: Budget, policy: Policy) -> Vec<Option<usize>> {
    let mut window = Window::new(budget, policy, std::sync::Arc::new(TokenCounter::Estimate));
    let mut scratch = Trajectory::empty("");
    let mut history: Vec<Turn> = Vec::new();
    let mut from = vec![None; messages.len()];
    let mut turn = 0;
    for m in messages {
        // A model call saw everything before each assistant message.
        if history.len() >= 2 && s(m, "role") == "assistant" {
            turn += 1;
            if let Some(c) = window.condense(&mut history, &mut scratch) {
                for (k, v) in c.views.iter().enumerate() {
                    if matches!(v, View::Masked) && from[k].is_none() {
                        from[k] = Some(turn);
                    }
                }
            }
        }
        history.push(Turn {
            role: s(m, "role").into(),
            content: s(m, "content").into(),
            tokens: u(m, "tokens"),
            masked: false,
        });
    }
    from
}

fn trajectory_body(
    r: &Row,
    masking: Option<(Budget, Policy)>,
    filter: Option<&(String, Row)>,
    filtered: bool,
) -> String {
    let mut h = String::new();
    let messages: Vec<Row> = r
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_object().cloned())
        .collect();
    let recorded_masked: Vec<bool> =
        messages.iter().map(|m| m.get("masked").and_then(Value::as_bool).unwrap_or(false)).collect();
    let replay = masking.map(|(b, p)| (b, p, replay_masking(&messages, b, p)));
    // The replay is shown only where it agrees with what the episode
    // recorded; else only the recorded flag is said.
    let agrees =
        replay.as_ref().is_some_and(|(_, _, from)| from.iter().zip(&recorded_masked).all(|(f, m)| f.is_some() == *m));
    outln!(
        h,
        "<p class=\"meta\">model {} · {} turns · exit: <b>{}</b> · prompt tokens {} · completion tokens {}{}</p>",
        esc(s(r, "model")),
        u(r, "steps"),
        esc(s(r, "exit_reason")),
        u(r, "prompt_tokens"),
        u(r, "completion_tokens"),
        match &replay {
            Some((b, p, _)) => format!(
                " · window {} (reserve {}), masking {}",
                b.window,
                b.reserve,
                esc(&serde_json::to_string(p).unwrap_or_default())
            ),
            None => String::new(),
        }
    );
    let mut turn = 0;
    for (k, m) in messages.iter().enumerate() {
        let role = s(m, "role");
        let content = s(m, "content");
        let tokens = u(m, "tokens");
        match (k, role) {
            (0, _) => {
                outln!(
                    h,
                    "<details><summary>system prompt ({tokens} tokens)</summary><pre>{}</pre></details>",
                    esc(content)
                );
            }
            (1, _) => {
                outln!(h, "<h2>Task</h2><div class=\"msg task\"><pre>{}</pre><span class=\"tok\">{tokens} tokens</span></div>", esc(content));
            }
            (_, "assistant") => {
                turn += 1;
                let (thought, call) = match content.find("<function=") {
                    Some(at) => content.split_at(at),
                    None => (content, ""),
                };
                outln!(h, "<div class=\"msg assistant\" data-turn=\"{turn}\"><h3>Turn {turn}</h3>");
                if !thought.trim().is_empty() {
                    outln!(h, "<div class=\"thought\"><pre>{}</pre></div>", esc(thought.trim()));
                }
                if !call.is_empty() {
                    outln!(h, "<div class=\"call\"><pre>{}</pre></div>", esc(call.trim()));
                }
                outln!(h, "<span class=\"tok\">{tokens} tokens</span></div>");
            }
            _ => {
                let note = match (&replay, agrees, recorded_masked[k]) {
                    (Some((_, _, from)), true, _) => match from[k] {
                        Some(t) => format!("masked from turn {t} on"),
                        None => "never masked".into(),
                    },
                    (_, _, true) => "masked (in the last prompt)".into(),
                    _ => "not masked in the last prompt".into(),
                };
                let class = if recorded_masked[k] { "msg observation masked" } else { "msg observation" };
                outln!(h,
                    "<div class=\"{class}\"><h4>Observation</h4><pre>{}</pre><span class=\"tok\">{tokens} tokens · {note}</span></div>",
                    esc(content)
                );
            }
        }
    }
    let patch = s(r, "patch");
    outln!(
        h,
        "<h2>Final patch</h2><pre class=\"patch\">{}</pre>",
        if patch.is_empty() { "(empty)".into() } else { esc(patch) }
    );
    h.push_str("<h2>Verdict</h2>\n");
    let graded: Option<(String, &Row)> = if r.contains_key("resolved") {
        Some(("this stage".into(), r))
    } else {
        filter.map(|(stage, row)| (format!("stage {stage}"), row))
    };
    match graded {
        Some((by, g)) => {
            outln!(h, "<p class=\"verdict\">{} (graded by {})</p>", esc(&verdict(g).unwrap_or_default()), esc(&by));
            if let Some(e) = g.get("test_error").and_then(Value::as_str) {
                outln!(h, "<p>test error: {}</p>", esc(e));
            }
            h.push_str("<table><thead><tr><th>test</th><th>group</th><th>status</th></tr></thead><tbody>\n");
            for t in g.get("tests").and_then(Value::as_array).into_iter().flatten() {
                let t = t.as_object().cloned().unwrap_or_default();
                outln!(h,
                    "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                    esc(s(&t, "name")),
                    esc(s(&t, "group")),
                    esc(&s(&t, "status").to_lowercase()),
                    esc(s(&t, "status"))
                );
            }
            h.push_str("</tbody></table>\n");
        }
        None if filtered => h.push_str("<p class=\"verdict\">not kept by the test filter (its patch did not resolve the instance, or it was dropped)</p>\n"),
        None => h.push_str("<p class=\"verdict\">not graded: no test_filter stage has graded this rollout yet</p>\n"),
    }
    h
}

fn sample_body(r: &Row) -> String {
    let mut h = String::new();
    outln!(h,
        "<p class=\"meta\">{} tokens, {} of them trained on · the student sees these messages, in this order; it learns the marked turns</p>",
        u(r, "tokens"),
        u(r, "trainable_tokens")
    );
    for m in r.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let m = m.as_object().cloned().unwrap_or_default();
        let trained = m.get("trainable").and_then(Value::as_bool).unwrap_or(false);
        let role = s(&m, "role");
        outln!(
            h,
            "<div class=\"msg {role}{}\" data-trainable=\"{trained}\"><h4>{role}{}</h4><pre>{}</pre></div>",
            if trained { " trained" } else { "" },
            if trained { " · trained on" } else { "" },
            esc(s(&m, "content"))
        );
    }
    h
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}h1{font-size:1.3em}.meta{color:#555}\
pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0;font-size:.85em}.msg{border:1px solid #ddd;border-radius:4px;padding:.4em .8em;margin:.6em 0}\
.assistant{background:#f3f7ff}.call{background:#e8eefc;padding:0 .4em}.observation{background:#fafafa}.masked{opacity:.55;border-style:dashed}\
.trained{border:2px solid #2a7a3a;background:#effaf1}.tok{font-size:.75em;color:#777}.patch{background:#f8f8f8;padding:.6em}\
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 6px}.passed{color:#2a7a3a}.failed{color:#b00}h3,h4{margin:.2em 0;font-size:.9em}";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(role: &str, tokens: u64) -> Row {
        json!({"role": role, "content": "", "tokens": tokens}).as_object().cloned().unwrap()
    }

    /// System, task, three rounds of a call and a 400-token output, and a
    /// last call.
    fn episode() -> Vec<Row> {
        let mut m = vec![msg("system", 100), msg("user", 100)];
        for _ in 0..3 {
            m.push(msg("assistant", 20));
            m.push(msg("user", 400));
        }
        m.push(msg("assistant", 20));
        m
    }

    #[test]
    fn the_page_says_from_which_turn_only_when_the_replay_agrees_with_the_record() {
        let budget = Budget { window: 1000, reserve: 100 };
        let mut messages = episode();
        for k in [3, 5] {
            messages[k].insert("masked".into(), json!(true));
        }
        let row = |messages: &Vec<Row>| json!({"messages": messages}).as_object().cloned().unwrap();
        let page = trajectory_body(&row(&messages), Some((budget, Policy::Fit)), None, false);
        assert!(page.contains("masked from turn 3 on") && page.contains("masked from turn 4 on"), "{page}");
        assert!(page.contains("never masked"));
        // The episode recorded something else: only its own flags are said.
        messages[5].insert("masked".into(), json!(false));
        let page = trajectory_body(&row(&messages), Some((budget, Policy::Fit)), None, false);
        assert!(!page.contains("from turn"), "{page}");
        assert!(page.contains("masked (in the last prompt)") && page.contains("not masked in the last prompt"));
    }

    #[test]
    fn masking_is_replayed_turn_by_turn_from_the_recorded_tokens() {
        let m = episode();
        // 1000 tokens leave 900 for the prompt: turn 3 sees 1040, turn 4
        // 1460 tokens, so each masks the oldest output it may.
        let from = replay_masking(&m, Budget { window: 1000, reserve: 100 }, Policy::Fit);
        assert_eq!(from[3], Some(3), "the first output, from the third call on");
        assert_eq!(from[5], Some(4), "the second, from the fourth");
        assert_eq!(from[7], None, "the latest output is never masked");
        assert!(from[..3].iter().chain([&from[2], &from[4], &from[6], &from[8]]).all(Option::is_none));
    }
}
