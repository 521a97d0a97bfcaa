//! `swestar grade`: grades a recorded SWE-bench test log (the harness's
//! `test_output.txt`, or a log a swestar stage kept) for one instance and
//! prints the harness's report JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::Exit;
use crate::store::format::TableFormat;
use crate::swebench::grading::EvalType;
use crate::swebench::parsers::Parser;

#[derive(Debug, Args)]
pub struct GradeArgs {
    /// The test log: between `>>>>> Start Test Output` and `>>>>> End Test
    /// Output`, with `>>>>> Test Exit Code: N` where the run recorded it.
    log: PathBuf,
    /// The instance: a SWE-bench instances file (JSON array, JSON Lines or
    /// Parquet) or one instance as a JSON object.
    #[arg(long, value_name = "FILE", required_unless_present = "fail_to_pass")]
    instances: Option<PathBuf>,
    /// Which instance of --instances (default: the only one).
    #[arg(long = "instance", value_name = "ID")]
    instance_id: Option<String>,
    /// Instead of --instances: the tests that must pass, as a JSON list.
    #[arg(long, value_name = "JSON", requires = "pass_to_pass", conflicts_with = "instances")]
    fail_to_pass: Option<String>,
    /// Instead of --instances: the tests that must keep passing, as a JSON list.
    #[arg(long, value_name = "JSON", requires = "fail_to_pass")]
    pass_to_pass: Option<String>,
    /// The repository (owner/name), which picks the log parser.
    #[arg(long, value_name = "OWNER/NAME")]
    repo: Option<String>,
    /// The log parser by the harness's name (parse_log_pytest, parse_log_django, ...):
    /// default the instance's `log_parser`, else its repository's.
    #[arg(long, value_name = "NAME")]
    log_parser: Option<String>,
    /// How tests are judged: both ways, or only by recorded failures.
    #[arg(long, value_enum, default_value = "pass-and-fail")]
    eval_type: EvalTypeArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EvalTypeArg {
    PassAndFail,
    FailOnly,
}

pub fn grade(args: GradeArgs) -> Result<ExitCode, Exit> {
    let log = std::fs::read(&args.log).map_err(|e| Exit::invalid(format!("error: {}: {e}", args.log.display())))?;
    // The harness reads logs as text, undecodable bytes replaced.
    let log = String::from_utf8_lossy(&log);
    let instance = match &args.instances {
        Some(file) => pick(file, args.instance_id.as_deref())?,
        None => {
            let mut inst = serde_json::Map::new();
            inst.insert(
                "instance_id".into(),
                Value::from(args.instance_id.clone().unwrap_or_else(|| "instance".into())),
            );
            inst.insert("FAIL_TO_PASS".into(), Value::from(args.fail_to_pass.clone()));
            inst.insert("PASS_TO_PASS".into(), Value::from(args.pass_to_pass.clone()));
            Value::Object(inst)
        }
    };
    let id = instance["instance_id"].as_str().unwrap_or("instance").to_string();
    let tests = |key: &str| {
        crate::swebench::test_list(instance.get(key))
            .map_err(|e| Exit::invalid(format!("error: instance {id}: {key}: {e}")))
    };
    let (f2p, p2p) = (tests("FAIL_TO_PASS")?, tests("PASS_TO_PASS")?);
    let parser = match args.log_parser.as_deref().or(instance.get("log_parser").and_then(Value::as_str)) {
        Some(name) => Parser::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Parser::ALL.iter().map(|p| p.name()).collect();
            Exit::invalid(format!("error: no log parser `{name}`; parsers: {}", names.join(", ")))
        })?,
        None => Parser::for_repo(args.repo.as_deref().or(instance.get("repo").and_then(Value::as_str)).unwrap_or("")),
    };
    let eval_type = match args.eval_type {
        EvalTypeArg::PassAndFail => EvalType::PassAndFail,
        EvalTypeArg::FailOnly => EvalType::FailOnly,
    };
    let report = crate::swebench::report::instance_report(&id, parser, &log, &f2p, &p2p, eval_type);
    println!("{}", serde_json::to_string_pretty(&report).expect("plain data"));
    Ok(ExitCode::SUCCESS)
}

/// One instance from a file of them: by id, or the only one.
fn pick(file: &Path, id: Option<&str>) -> Result<Value, Exit> {
    let bad = |e: String| Exit::invalid(format!("error: {}: {e}", file.display()));
    let is_parquet = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let rows = if is_parquet {
        crate::store::rows::read_all(&[file.to_path_buf()], TableFormat::Parquet).map_err(|e| bad(e.to_string()))?
    } else {
        let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(one)) => vec![Value::Object(one)],
            _ => crate::store::rows::read_all(&[file.to_path_buf()], TableFormat::Jsonl)
                .map_err(|e| Exit::invalid(format!("error: {e}")))?,
        }
    };
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["instance_id"].as_str()).collect();
    match id {
        Some(id) => rows.iter().find(|r| r["instance_id"] == id).cloned().ok_or_else(|| {
            let hint = crate::workflow::did_you_mean(id, ids.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            bad(format!("no instance `{id}`{hint}; it has {} instances", rows.len()))
        }),
        None if rows.len() == 1 => Ok(rows[0].clone()),
        None => Err(bad(format!("{} instances: name one with --instance ID", rows.len()))),
    }
}
