//! `swestar serve --replay` as a user runs it: a separate process on
//! loopback that the local demo's workflow is pointed at with `--set`,
//! first with a scripts file, then replaying the rollout it recorded.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use common::demo::scripts;
use common::{path_with_pytest, Ctx};
use swestar::agent::scripted::Reply;

const WF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/local-demo.toml");

/// A `serve --replay` process and the URL it printed; killed when dropped.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _already_gone = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn serve(ctx: &Ctx, file: &str) -> Server {
    let mut child = ctx
        .cmd(&["serve", "--replay", file, "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("http://127.0.0.1:") && line.trim_end().ends_with("/v1"), "{line:?}");
    Server(child, line.trim().to_string())
}

fn sets(url: &str) -> Vec<String> {
    ["teacher", "student"].iter().flat_map(|m| ["--set".to_string(), format!("models.{m}.base_url={url}")]).collect()
}

fn run(ctx: &Ctx, args: &[String]) -> common::Run {
    let mut cmd = ctx.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("PATH", path_with_pytest());
    cmd.output().unwrap().into()
}

#[test]
fn a_whole_workflow_runs_against_replayed_replies() {
    let ctx = Ctx::new();
    let doc: serde_json::Map<String, serde_json::Value> = scripts()
        .into_iter()
        .map(|(k, replies)| {
            let texts = replies
                .into_iter()
                .map(|r| match r {
                    Reply::Text(t) => serde_json::Value::from(t),
                    other => panic!("the demo's scripts are plain replies: {other:?}"),
                })
                .collect();
            (k, serde_json::Value::Array(texts))
        })
        .collect();
    ctx.write("scripts.json", &serde_json::Value::Object(doc).to_string());
    let server = serve(&ctx, "scripts.json");
    let mut args = vec!["run".to_string(), WF.into(), "--json".into()];
    args.extend(sets(&server.1));
    let r = run(&ctx, &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let set_refs = sets(&server.1);
    let set_refs: Vec<&str> = set_refs.iter().map(String::as_str).collect();
    let rollout = ctx.export_rows(WF, "rollout", &set_refs);
    assert_eq!(rollout.len(), 20);
    assert_eq!(ctx.export_rows(WF, "filter", &set_refs).len(), 4, "the two scripted fixes, twice each");
    let resolved = ctx.export_rows(WF, "eval", &set_refs).iter().filter(|r| r["resolved"] == true).count();
    assert_eq!(resolved, 1);
    drop(server);

    // The recorded rollout, replayed: the same trajectories again (its
    // prompts name other sandbox directories than this run's).
    let mut export_args: Vec<String> = vec!["export".into(), WF.into(), "rollout".into(), "--to".into()];
    export_args.push(ctx.path("rollout.parquet").display().to_string());
    export_args.extend(set_refs.iter().map(|s| s.to_string()));
    let e = run(&ctx, &export_args);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let server = serve(&ctx, "rollout.parquet");
    let mut args = vec!["run".to_string(), WF.into(), "--json".into(), "--only".into(), "rollout".into()];
    args.extend(["--force".into(), "rollout".into()]);
    args.extend(sets(&server.1));
    let r = run(&ctx, &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.status_of("rollout"), "committed");
    let again_sets = sets(&server.1);
    let again_refs: Vec<&str> = again_sets.iter().map(String::as_str).collect();
    let again = ctx.export_rows(WF, "rollout", &again_refs);
    let key = |rows: &[serde_json::Value]| {
        let mut v: Vec<(String, u64, String, String)> = rows
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (s("instance_id"), r["attempt"].as_u64().unwrap(), s("patch"), s("exit_reason"))
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&again), key(&rollout));
    assert!(again.iter().any(|r| !r["patch"].as_str().unwrap().is_empty()), "the fixes replayed");
}
