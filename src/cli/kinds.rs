//! `swestar kinds [KIND]`: the stage kinds, or one kind's settings with
//! their types and defaults. Read from the workflow format's JSON Schema,
//! which is generated from the kinds' wire types, so what is shown is
//! what the code does.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::Exit;
use crate::workflow::{self, did_you_mean};

#[derive(Debug, Args)]
pub struct KindsArgs {
    /// A kind whose settings to show (default: list the kinds).
    kind: Option<String>,
}

pub fn kinds(args: KindsArgs) -> Result<ExitCode, Exit> {
    let schema: Value = serde_json::from_str(&workflow::json_schema()).expect("the schema is JSON");
    let defs = &schema["$defs"];
    let variants = defs["StageSchema"]["oneOf"].as_array().cloned().unwrap_or_default();
    let name_of = |v: &Value| v["properties"]["kind"]["const"].as_str().unwrap_or_default().to_string();
    let Some(kind) = args.kind else {
        for v in &variants {
            println!("{}", name_of(v));
        }
        println!("\n`swestar kinds KIND` shows a kind's settings and their defaults.");
        return Ok(ExitCode::SUCCESS);
    };
    let Some(variant) = variants.iter().find(|v| name_of(v) == kind) else {
        let names: Vec<String> = variants.iter().map(name_of).collect();
        let help = did_you_mean(&kind, names.iter().map(String::as_str))
            .map(|k| format!("did you mean `{k}`?"))
            .unwrap_or_else(|| format!("kinds: {}", names.join(", ")));
        return Err(Exit::invalid(format!("error: no stage kind `{kind}`\n  = help: {help}")));
    };
    let common = workflow::wire::COMMON_KEYS;
    println!("kind = \"{kind}\"");
    println!("(and the keys every stage has: {})\n", common.join(", "));
    let mut rows = Vec::new();
    if let Some(props) = variant["properties"].as_object() {
        for (name, p) in props.iter().filter(|(n, _)| *n != "kind" && !common.contains(&n.as_str())) {
            setting(defs, name, p, &mut rows);
        }
    }
    let width = rows.iter().map(|r: &Row| r.name.len()).max().unwrap_or(0);
    // Long enumerations (log parsers) are not padded to.
    let twidth = rows.iter().map(|r| r.ty.len()).filter(|n| *n <= 40).max().unwrap_or(0);
    for r in rows {
        match r.default {
            Some(d) => println!("{:<width$}  {:<twidth$}  = {d}", r.name, r.ty),
            None => println!("{:<width$}  {}", r.name, r.ty),
        }
        if !r.doc.is_empty() {
            println!("{:<width$}    {}", "", r.doc);
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Row {
    name: String,
    ty: String,
    default: Option<String>,
    doc: String,
}

/// One setting, and a sub-table's own settings under dotted names.
fn setting(defs: &Value, name: &str, p: &Value, rows: &mut Vec<Row>) {
    let (target, optional, def) = referenced(defs, p);
    let doc = p["description"].as_str().or_else(|| target["description"].as_str()).unwrap_or("");
    let doc = doc.split("\n\n").next().unwrap_or("").replace('\n', " ");
    let default = p.get("default").filter(|d| !d.is_null()).map(Value::to_string);
    let is_table = target["type"] == "object" && target["properties"].is_object();
    let nullable = target["type"].as_array().is_some_and(|ts| ts.iter().any(|t| t == "null"));
    let optional = optional || nullable;
    let ty = match def {
        _ if is_table => "table".to_string(),
        Some("Duration") => "duration".to_string(),
        _ => type_name(target),
    };
    rows.push(Row { name: name.to_string(), ty: if optional { format!("{ty}, optional") } else { ty }, default, doc });
    if is_table {
        if let Some(props) = target["properties"].as_object() {
            for (sub, sp) in props {
                setting(defs, &format!("{name}.{sub}"), sp, rows);
            }
        }
    }
}

/// The definition a property refers to (itself when inline), whether it
/// may be left out with nothing in its place (`anyOf [X, null]`), and the
/// definition's name.
fn referenced<'a>(defs: &'a Value, p: &'a Value) -> (&'a Value, bool, Option<&'a str>) {
    let resolve = |v: &'a Value| match v["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => (&defs[name], Some(name)),
        None => (v, None),
    };
    if let Some(any) = p["anyOf"].as_array() {
        if let Some(inner) = any.iter().find(|v| v["type"] != "null") {
            let (target, name) = resolve(inner);
            return (target, true, name);
        }
    }
    let (target, name) = resolve(p);
    (target, false, name)
}

fn type_name(target: &Value) -> String {
    let mut consts: Vec<&Value> = target["enum"].as_array().into_iter().flatten().collect();
    for v in target["oneOf"].as_array().into_iter().flatten() {
        consts.extend(v["enum"].as_array().into_iter().flatten());
        consts.push(&v["const"]);
    }
    let values: Vec<String> = consts.iter().filter_map(|v| v.as_str().map(|s| format!("\"{s}\""))).collect();
    if !values.is_empty() {
        return values.join(" | ");
    }
    match &target["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => {
            ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect::<Vec<_>>().join(" | ")
        }
        _ => "any".into(),
    }
}
