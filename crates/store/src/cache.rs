//! Cache keys. A key is blake3 over the canonical JSON of one versioned
//! [`Preimage`]: the stage kind and its implementation version, the
//! resolved parameters (resource settings excluded), the content hash of
//! every file the stage reads, the content hash of every upstream artifact
//! (early cutoff) and the hashes of declared environment variables. Pure:
//! it takes hashes already computed and never touches the file system.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped whenever a field is added to or removed from [`Preimage`].
pub const PREIMAGE_SCHEMA: u32 = 1;

/// The hash that names an artifact: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
    /// Accepts only what a key looks like, so a damaged ref or directory
    /// name can never be mistaken for one.
    pub fn parse(s: &str) -> Option<CacheKey> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| CacheKey(s.to_string()))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that decides what a stage produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preimage {
    pub schema: u32,
    pub kind: String,
    pub impl_version: u32,
    /// The kind's own settings that shape output (a command's `run` text,
    /// its table format).
    pub definition: BTreeMap<String, Value>,
    /// User parameters.
    pub params: BTreeMap<String, Value>,
    /// Relative path → blake3 of each file the stage reads by path.
    pub files: BTreeMap<String, String>,
    /// Input name → content hash of the data source or upstream artifact.
    pub inputs: BTreeMap<String, String>,
    /// `needs` stage → content hash of its artifact.
    pub needs: BTreeMap<String, String>,
    /// Declared variable → blake3 of its value (`None` when unset).
    pub env: BTreeMap<String, Option<String>>,
}

impl Preimage {
    pub fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).expect("preimage is plain data"))
    }

    pub fn key(&self) -> CacheKey {
        CacheKey(blake3::hash(self.canonical().as_bytes()).to_hex().to_string())
    }
}

/// JSON with object keys sorted at every level and no whitespace: the same
/// value always gives the same bytes, whatever order the TOML had.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// blake3 of a string, hex.
pub fn hash_str(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

/// How one entry of a map differs between two preimages.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    Added(T),
    Removed(T),
    Changed(T, T),
}

/// One field-level difference between an old and a new preimage.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    Schema { old: u32, new: u32 },
    Kind { old: String, new: String },
    ImplVersion { old: u32, new: u32 },
    Definition { name: String, change: Change<Value> },
    Param { name: String, change: Change<Value> },
    File { path: String, change: Change<String> },
    Input { name: String, change: Change<String> },
    Need { stage: String, change: Change<String> },
    Env { name: String },
}

/// Every difference between two preimages, in field order. Inputs and needs
/// named in `ignore` are skipped: their new value is not known yet.
pub fn diff(old: &Preimage, new: &Preimage, ignore: &[&str]) -> Vec<Difference> {
    let mut out = Vec::new();
    if old.schema != new.schema {
        out.push(Difference::Schema { old: old.schema, new: new.schema });
    }
    if old.kind != new.kind {
        out.push(Difference::Kind { old: old.kind.clone(), new: new.kind.clone() });
    }
    if old.impl_version != new.impl_version {
        out.push(Difference::ImplVersion { old: old.impl_version, new: new.impl_version });
    }
    for (name, change) in map_diff(&old.definition, &new.definition) {
        out.push(Difference::Definition { name, change });
    }
    for (name, change) in map_diff(&old.params, &new.params) {
        out.push(Difference::Param { name, change });
    }
    for (path, change) in map_diff(&old.files, &new.files) {
        out.push(Difference::File { path, change });
    }
    for (name, change) in map_diff(&old.inputs, &new.inputs) {
        if !ignore.contains(&name.as_str()) || !matches!(change, Change::Changed(..)) {
            out.push(Difference::Input { name, change });
        }
    }
    for (stage, change) in map_diff(&old.needs, &new.needs) {
        if !ignore.contains(&stage.as_str()) || !matches!(change, Change::Changed(..)) {
            out.push(Difference::Need { stage, change });
        }
    }
    for (name, _) in map_diff(&old.env, &new.env) {
        out.push(Difference::Env { name });
    }
    out
}

fn map_diff<V: Clone + PartialEq>(old: &BTreeMap<String, V>, new: &BTreeMap<String, V>) -> Vec<(String, Change<V>)> {
    let mut out = Vec::new();
    for (k, o) in old {
        match new.get(k) {
            None => out.push((k.clone(), Change::Removed(o.clone()))),
            Some(n) if n != o => out.push((k.clone(), Change::Changed(o.clone(), n.clone()))),
            Some(_) => {}
        }
    }
    for (k, n) in new {
        if !old.contains_key(k) {
            out.push((k.clone(), Change::Added(n.clone())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Preimage {
        Preimage {
            schema: PREIMAGE_SCHEMA,
            kind: "command".into(),
            impl_version: 1,
            definition: [("run".to_string(), json!("echo {{ output }}"))].into(),
            params: [("lr".to_string(), json!(5e-5)), ("epochs".to_string(), json!(3))].into(),
            files: [("a.py".to_string(), "aa".to_string())].into(),
            inputs: [("x".to_string(), "11".to_string())].into(),
            needs: BTreeMap::new(),
            env: [("HOME".to_string(), Some("hh".to_string()))].into(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":null}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#);
    }

    #[test]
    fn key_is_stable_and_independent_of_param_order() {
        let a = base();
        let mut b = base();
        b.params = [("epochs".to_string(), json!(3)), ("lr".to_string(), json!(5e-5))].into();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().as_str().len(), 64);
        // Object-valued params in another insertion order hash the same.
        let mut c = base();
        let mut d = base();
        c.params.insert("opt".into(), serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap());
        d.params.insert("opt".into(), serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap());
        assert_eq!(c.key(), d.key());
    }

    #[test]
    fn every_field_changes_the_key_and_is_named_by_diff() {
        let a = base();
        type Mutation = Box<dyn Fn(&mut Preimage)>;
        let mutations: Vec<(Mutation, &str)> = vec![
            (Box::new(|p| p.schema += 1), "Schema"),
            (Box::new(|p| p.kind = "segment".into()), "Kind"),
            (Box::new(|p| p.impl_version = 2), "ImplVersion"),
            (
                Box::new(|p| {
                    p.definition.insert("run".into(), json!("other"));
                }),
                "Definition",
            ),
            (
                Box::new(|p| {
                    p.params.insert("lr".into(), json!(1e-5));
                }),
                "Param",
            ),
            (
                Box::new(|p| {
                    p.files.insert("a.py".into(), "bb".into());
                }),
                "File",
            ),
            (
                Box::new(|p| {
                    p.inputs.insert("x".into(), "22".into());
                }),
                "Input",
            ),
            (
                Box::new(|p| {
                    p.needs.insert("s".into(), "33".into());
                }),
                "Need",
            ),
            (
                Box::new(|p| {
                    p.env.insert("HOME".into(), None);
                }),
                "Env",
            ),
        ];
        for (mutate, field) in mutations {
            let mut b = base();
            mutate(&mut b);
            assert_ne!(a.key(), b.key(), "{field} must change the key");
            let d = diff(&a, &b, &[]);
            assert_eq!(d.len(), 1, "{field}: {d:?}");
            assert!(format!("{:?}", d[0]).starts_with(field), "{field}: {d:?}");
        }
    }

    #[test]
    fn diff_lists_every_difference_and_skips_pending_inputs() {
        let a = base();
        let mut b = base();
        b.params.insert("lr".into(), json!(1e-5));
        b.params.remove("epochs");
        b.inputs.insert("x".into(), "changed".into());
        let d = diff(&a, &b, &["x"]);
        assert_eq!(
            d,
            vec![
                Difference::Param { name: "epochs".into(), change: Change::Removed(json!(3)) },
                Difference::Param { name: "lr".into(), change: Change::Changed(json!(5e-5), json!(1e-5)) },
            ]
        );
    }

    #[test]
    fn parse_accepts_only_keys() {
        assert!(CacheKey::parse(&"a".repeat(64)).is_some());
        assert!(CacheKey::parse("abc").is_none());
        assert!(CacheKey::parse(&"G".repeat(64)).is_none());
    }
}
