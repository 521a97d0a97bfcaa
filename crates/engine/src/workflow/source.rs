//! The workflow file's text and positions in it: byte spans to
//! `line:column`, dotted key paths to spans, and the quoted-line-with-caret
//! rendering that every configuration error uses.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One workflow file as read from disk.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// A position in a source file, 1-based like editors show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The text of the line, for the caret rendering.
    pub line_text: String,
    /// Width of the underline under `column` (at least 1).
    pub width: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

impl Location {
    /// The quoted line with a caret under the offending part.
    pub fn snippet(&self) -> String {
        let gutter = self.line.to_string().len();
        let pad = " ".repeat(gutter);
        let lead: String = self
            .line_text
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "{pad} |\n{line} | {text}\n{pad} | {lead}{carets}",
            line = self.line,
            text = self.line_text,
            carets = "^".repeat(self.width.max(1))
        )
    }
}

impl Source {
    pub fn read(path: &Path) -> std::io::Result<Source> {
        let text = std::fs::read_to_string(path)?;
        Ok(Source { path: path.to_path_buf(), text })
    }

    /// The location of a byte span.
    pub fn locate(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = self.text[line_start..].find('\n').map(|i| line_start + i).unwrap_or(self.text.len());
        let column = self.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        let width = self.text[start..end].chars().count().max(1);
        Location {
            path: self.path.clone(),
            line,
            column,
            line_text: self.text[line_start..line_end].trim_end_matches('\r').to_string(),
            width,
        }
    }

    /// Parses the text into a spanned tree, used to find keys by path.
    pub fn spanned(&self) -> Option<Spanned<DeTable<'_>>> {
        DeTable::parse(&self.text).ok()
    }

    /// The location of the deepest existing key along a dotted path
    /// (`["stages", "total", "inputs", "doubled"]`): the value of the last
    /// key that exists, so an error about a value points at that value.
    pub fn locate_path(&self, path: &[&str]) -> Option<Location> {
        let root = self.spanned()?;
        let mut table: &DeTable<'_> = root.get_ref();
        let mut found: Option<Range<usize>> = None;
        for (i, segment) in path.iter().enumerate() {
            let Some((key, value)) = table.get_key_value(*segment) else {
                break;
            };
            let last = i + 1 == path.len();
            match value.get_ref() {
                DeValue::Table(inner) if !last => {
                    found = Some(key.span());
                    table = inner;
                }
                _ => {
                    found = Some(if last { value.span() } else { key.span() });
                    // For an array value, a numeric next segment selects an element.
                    if let (DeValue::Array(items), Some(next)) = (value.get_ref(), path.get(i + 1)) {
                        if let Some(item) = next.parse::<usize>().ok().and_then(|n| items.get(n)) {
                            found = Some(item.span());
                        }
                    }
                    break;
                }
            }
        }
        found.map(|span| self.locate(span))
    }

    /// The dotted key path whose key or value encloses a byte offset: used
    /// to name the key of a deserialization error that only carries a span.
    /// The deepest match wins (a table header's span says little).
    pub fn path_at(&self, offset: usize) -> Vec<String> {
        fn walk(table: &DeTable<'_>, prefix: &mut Vec<String>, offset: usize, best: &mut Vec<String>) {
            for (key, value) in table.iter() {
                prefix.push(key.get_ref().to_string());
                let (k, v) = (key.span(), value.span());
                let hit =
                    (k.start <= offset && offset < k.end.max(k.start + 1)) || (v.start <= offset && offset < v.end);
                if hit && prefix.len() > best.len() {
                    *best = prefix.clone();
                }
                if let DeValue::Table(inner) = value.get_ref() {
                    walk(inner, prefix, offset, best);
                }
                prefix.pop();
            }
        }
        let mut best = Vec::new();
        if let Some(root) = self.spanned() {
            walk(root.get_ref(), &mut Vec::new(), offset, &mut best);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source { path: PathBuf::from("wf.toml"), text: text.to_string() }
    }

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let s = src("a = 1\nbb = 'x'\n");
        let loc = s.locate(7..9);
        assert_eq!((loc.line, loc.column, loc.width), (2, 2, 2));
        assert_eq!(loc.line_text, "bb = 'x'");
        assert_eq!(loc.to_string(), "wf.toml:2:2");
        assert!(loc.snippet().contains("2 | bb = 'x'\n  |  ^^"));
    }

    #[test]
    fn locate_path_finds_nested_values_in_dotted_and_inline_tables() {
        let s = src("[stages.a]\nkind = \"command\"\ninputs = { x = \"data.nope\" }\nneeds = [\"p\", \"q\"]\n");
        let loc = s.locate_path(&["stages", "a", "inputs", "x"]).unwrap();
        assert_eq!((loc.line, loc.column), (3, 16));
        let loc = s.locate_path(&["stages", "a", "needs", "1"]).unwrap();
        assert_eq!((loc.line, loc.column), (4, 15));
        // A missing leaf falls back to the deepest key that exists.
        let loc = s.locate_path(&["stages", "a", "params", "lr"]).unwrap();
        assert_eq!(loc.line, 1);
    }

    #[test]
    fn path_at_names_the_key_under_an_offset() {
        let s = src("[stages.a]\nkind = \"command\"\nbogus = 1\n");
        let offset = s.text.find("bogus").unwrap();
        assert_eq!(s.path_at(offset), vec!["stages", "a", "bogus"]);
    }
}
