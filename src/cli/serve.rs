//! `swestar serve --replay`: an OpenAI-compatible server on loopback that
//! replays recorded assistant replies, so a whole workflow runs end to end
//! without a model (on a laptop, in a user's CI). The replies come from a
//! scripts file or from a rollout table (an exported artifact).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::Exit;
use crate::agent::scripted::{blank_paths, Reply, ScriptedServer};
use crate::store::format::TableFormat;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What to replay: a scripts file (.json: {"text in the first user
    /// message": ["reply 1", "reply 2", ...], "*": [...]}) or a rollout
    /// table (.parquet or .jsonl, as `export` writes it): each instance's
    /// first attempt, keyed by its prompt.
    #[arg(long, value_name = "FILE")]
    replay: PathBuf,
    /// The port on 127.0.0.1 (0: any free one; the URL is printed first).
    #[arg(long, default_value_t = 30000)]
    port: u16,
}

pub fn serve(args: ServeArgs) -> Result<ExitCode, Exit> {
    let (scripts, from_rollout) = load(&args.replay)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Exit::failed(format!("error: cannot start runtime: {e}")))?;
    runtime.block_on(async move {
        let n = scripts.len();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
        let server = ScriptedServer::bind(addr, scripts, from_rollout)
            .await
            .map_err(|e| Exit::failed(format!("error: cannot listen on {addr}: {e}")))?;
        // The URL on stdout, alone and first, for scripts to read.
        println!("{}", server.base_url());
        use std::io::Write;
        std::io::stdout().flush().map_err(|e| Exit::failed(format!("error: {e}")))?;
        eprintln!(
            "replaying {n} scripts from {} (Ctrl-C to stop); point a workflow at it with \
             --set models.NAME.base_url={}",
            args.replay.display(),
            server.base_url()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Exit::failed(format!("error: {e}")))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("served {} requests", server.requests().len());
        Ok(ExitCode::SUCCESS)
    })
}

/// The scripts of a file, and whether they come from a rollout (whose
/// prompts name sandbox paths that differ from run to run).
fn load(file: &Path) -> Result<(HashMap<String, Vec<Reply>>, bool), Exit> {
    let bad = |e: String| Exit::invalid(format!("error: {}: {e}", file.display()));
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext == "json" {
        let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
        let doc: serde_json::Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON object of scripts: {e}")))?;
        let mut scripts = HashMap::new();
        for (key, replies) in doc {
            let replies = replies
                .as_array()
                .and_then(|a| a.iter().map(|r| r.as_str().map(Reply::text)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad(format!("script `{key}`: expected a list of reply strings")))?;
            scripts.insert(key, replies);
        }
        return Ok((scripts, false));
    }
    let format = match ext.as_str() {
        "parquet" => TableFormat::Parquet,
        "jsonl" => TableFormat::Jsonl,
        _ => return Err(bad("expected a scripts .json, or a rollout table (.parquet or .jsonl)".into())),
    };
    let rows = crate::store::rows::read_all_columns(
        &[file.to_path_buf()],
        format,
        Some(&["instance_id", "attempt", "messages"]),
    )
    .map_err(|e| Exit::invalid(format!("error: {e}")))?;
    let mut first: HashMap<String, (u64, String, Vec<Reply>)> = HashMap::new();
    for row in &rows {
        let (Some(id), Some(messages)) = (row["instance_id"].as_str(), row["messages"].as_array()) else {
            return Err(bad("not a rollout table: rows need instance_id and messages".into()));
        };
        let attempt = row["attempt"].as_u64().unwrap_or(0);
        let Some(prompt) = messages.iter().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()) else {
            continue;
        };
        let replies: Vec<Reply> = messages
            .iter()
            .filter(|m| m["role"] == "assistant")
            .filter_map(|m| m["content"].as_str().map(Reply::text))
            .collect();
        if first.get(id).is_none_or(|(a, _, _)| attempt < *a) {
            first.insert(id.to_string(), (attempt, blank_paths(prompt), replies));
        }
    }
    if first.is_empty() {
        return Err(bad("no trajectories to replay".into()));
    }
    Ok((first.into_values().map(|(_, key, replies)| (key, replies)).collect(), true))
}
