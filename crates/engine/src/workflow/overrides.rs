//! `--set KEY=VALUE` and sweep assignments: dotted paths into the TOML
//! document, applied to its table before it is deserialized. Paths are
//! checked strictly so that a typo fails instead of silently adding a key
//! (and with it a new cache key).

use std::fmt;

/// One assignment of a value to a dotted path, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub path: Vec<String>,
    pub value: toml::Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// `--set` on the command line (the argument as given).
    Set(String),
    /// A `[sweep]` key of the workflow file.
    Sweep(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Set(arg) => write!(f, "--set {arg}"),
            Origin::Sweep(key) => write!(f, "[sweep] \"{key}\""),
        }
    }
}

/// Parses a dotted key with TOML's own rules (so `stages."a.b".x` works).
pub fn parse_path(key: &str) -> Result<Vec<String>, String> {
    let doc: toml::Table =
        toml::from_str(&format!("{key} = 0")).map_err(|_| format!("`{key}` is not a dotted key path"))?;
    let mut path = Vec::new();
    let mut table = &doc;
    loop {
        let (k, v) = table.iter().next().ok_or_else(|| format!("`{key}` is empty"))?;
        path.push(k.clone());
        match v {
            toml::Value::Table(inner) => table = inner,
            _ => return Ok(path),
        }
    }
}

/// Parses `KEY=VALUE`; VALUE is a TOML value, or a plain string when it
/// does not parse as one (`base_url=http://host:8000/v1`).
pub fn parse_set(arg: &str) -> Result<Assignment, String> {
    let (key, raw) = arg.split_once('=').ok_or_else(|| format!("--set {arg}: expected KEY=VALUE"))?;
    let path = parse_path(key.trim()).map_err(|e| format!("--set {arg}: {e}"))?;
    let value = parse_value(raw.trim());
    Ok(Assignment { path, value, origin: Origin::Set(arg.to_string()) })
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Renders a value the way a user would type it back.
pub fn display_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Tables whose keys are names the user defined: a missing name there is a
/// typo, never something to create.
fn is_named_collection(path: &[String]) -> bool {
    matches!(path, [one] if one == "stages" || one == "data" || one == "models")
}

fn is_params(path: &[String]) -> bool {
    path.last().is_some_and(|p| p == "params")
}

/// Applies an assignment to the document's table.
pub fn apply(root: &mut toml::Table, assignment: &Assignment) -> Result<(), String> {
    let path = &assignment.path;
    let mut table = root;
    for (i, segment) in path[..path.len() - 1].iter().enumerate() {
        let here = &path[..i];
        if !table.contains_key(segment) {
            if is_named_collection(here) || is_params(here) || here.is_empty() {
                return Err(missing(table, here, segment));
            }
            table.insert(segment.clone(), toml::Value::Table(toml::Table::new()));
        }
        table = match table.get_mut(segment) {
            Some(toml::Value::Table(inner)) => inner,
            Some(other) => {
                return Err(format!(
                    "`{}` is a {}, not a table, so this key cannot be set",
                    path[..=i].join("."),
                    other.type_str()
                ))
            }
            None => unreachable!("inserted above"),
        };
    }
    let (leaf, parent) = (&path[path.len() - 1], &path[..path.len() - 1]);
    if !table.contains_key(leaf) && (is_params(parent) || is_named_collection(parent) || parent.is_empty()) {
        return Err(missing(table, parent, leaf));
    }
    let value = match table.get(leaf) {
        Some(declared) => conform(declared, assignment, &path.join("."))?,
        None => assignment.value.clone(),
    };
    table.insert(leaf.clone(), value);
    Ok(())
}

/// A value set over one the workflow declares takes the declared type: an
/// integer for a float (`lr=1`), the text as typed for a string
/// (`--set ...tag=40`); anything else of another type is a mistake that
/// would otherwise reach the stage (and its cache key) as a string.
fn conform(declared: &toml::Value, assignment: &Assignment, key: &str) -> Result<toml::Value, String> {
    use toml::Value as V;
    let value = &assignment.value;
    match (declared, value) {
        (V::Float(_), V::Integer(i)) => return Ok(V::Float(*i as f64)),
        (V::String(_), V::Integer(_) | V::Float(_) | V::Boolean(_) | V::Datetime(_)) => {
            if let Origin::Set(arg) = &assignment.origin {
                let raw = arg.split_once('=').map(|(_, r)| r.trim()).unwrap_or_default();
                return Ok(V::String(raw.to_string()));
            }
        }
        _ => {}
    }
    if std::mem::discriminant(declared) == std::mem::discriminant(value) {
        return Ok(value.clone());
    }
    let article = |t: &str| if t.starts_with(['a', 'i']) { format!("an {t}") } else { format!("a {t}") };
    Err(format!(
        "`{key}` is {} in the workflow ({}), and {} is {}",
        article(declared.type_str()),
        display_value(declared),
        match value {
            V::String(s) => format!("`{s}`"),
            other => other.to_string(),
        },
        article(value.type_str()),
    ))
}

fn missing(table: &toml::Table, parent: &[String], name: &str) -> String {
    let what = match parent {
        [] => "no section".to_string(),
        [one] if one == "stages" => "no stage".to_string(),
        [one] if one == "data" => "no data source".to_string(),
        [one] if one == "models" => "no model".to_string(),
        _ if is_params(parent) => format!("no parameter in {} named", parent.join(".")),
        _ => format!("no key in {} named", parent.join(".")),
    };
    let names: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut msg = format!("{what} `{name}`");
    if let Some(close) = crate::workflow::did_you_mean(name, names.iter().copied()) {
        msg.push_str(&format!(" (did you mean `{close}`?)"));
    } else if !names.is_empty() {
        msg.push_str(&format!(" (there is: {})", names.join(", ")));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> toml::Table {
        toml::from_str("[workflow]\nname='x'\n[stages.train]\nkind='command'\nrun='x'\nparams={lr=5e-5}\n").unwrap()
    }

    #[test]
    fn values_parse_as_toml_or_fall_back_to_strings() {
        let a = parse_set("stages.train.params.lr=1e-5").unwrap();
        assert_eq!(a.path, ["stages", "train", "params", "lr"]);
        assert_eq!(a.value, toml::Value::Float(1e-5));
        let a = parse_set("models.t.base_url=http://h:1/v1").unwrap();
        assert_eq!(a.value, toml::Value::String("http://h:1/v1".into()));
        let a = parse_set("stages.\"a.b\".run=[1, 2]").unwrap();
        assert_eq!(a.path, ["stages", "a.b", "run"]);
        assert!(a.value.is_array());
        assert!(parse_set("no-equals-sign").is_err());
    }

    #[test]
    fn apply_replaces_existing_and_creates_struct_tables() {
        let mut t = doc();
        apply(&mut t, &parse_set("stages.train.params.lr=1e-5").unwrap()).unwrap();
        assert_eq!(t["stages"]["train"]["params"]["lr"].as_float(), Some(1e-5));
        apply(&mut t, &parse_set("stages.train.resources.time='1h'").unwrap()).unwrap();
        assert_eq!(t["stages"]["train"]["resources"]["time"].as_str(), Some("1h"));
    }

    #[test]
    fn apply_rejects_typos_in_names_and_params() {
        let mut t = doc();
        let e = apply(&mut t, &parse_set("stages.trian.params.lr=1").unwrap()).unwrap_err();
        assert!(e.contains("no stage `trian`") && e.contains("did you mean `train`"), "{e}");
        let e = apply(&mut t, &parse_set("stages.train.params.rl=1").unwrap()).unwrap_err();
        assert!(e.contains("no parameter") && e.contains("`rl`"), "{e}");
        let e = apply(&mut t, &parse_set("stages.train.run.x=1").unwrap()).unwrap_err();
        assert!(e.contains("is a string, not a table"), "{e}");
    }

    /// Declared type → what a `--set` may give it (a decision table).
    #[test]
    fn set_values_take_the_declared_type() {
        let base = "[stages.a]\nkind='command'\nrun='x'\nparams={n=60, lr=5e-5, on=true, tag='v1', xs=[1]}\n";
        let set = |arg: &str| {
            let mut t: toml::Table = toml::from_str(base).unwrap();
            apply(&mut t, &parse_set(arg).unwrap()).map(|()| t["stages"]["a"]["params"].clone())
        };
        use toml::Value as V;
        let ok = [
            ("n=40", "n", V::Integer(40)),
            ("lr=1", "lr", V::Float(1.0)),
            ("lr=2e-5", "lr", V::Float(2e-5)),
            ("on=false", "on", V::Boolean(false)),
            ("tag=40", "tag", V::String("40".into())),
            ("tag=1e-5", "tag", V::String("1e-5".into())),
            ("tag=v2", "tag", V::String("v2".into())),
            ("xs=[1, 2]", "xs", V::Array(vec![V::Integer(1), V::Integer(2)])),
        ];
        for (arg, key, want) in ok {
            let got = set(&format!("stages.a.params.{arg}")).unwrap_or_else(|e| panic!("{arg}: {e}"));
            assert_eq!(got[key], want, "{arg}");
        }
        let bad = [
            ("n=abc", "`stages.a.params.n` is an integer in the workflow (60), and `abc` is a string"),
            ("n=1.5", "is an integer in the workflow (60), and 1.5 is a float"),
            ("on=yes", "is a boolean in the workflow (true), and `yes` is a string"),
            ("lr=fast", "is a float in the workflow"),
            ("xs=1", "is an array in the workflow ([1]), and 1 is an integer"),
        ];
        for (arg, want) in bad {
            let e = set(&format!("stages.a.params.{arg}")).unwrap_err();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }
}
