//! `str_replace_editor`: view, create, str_replace, insert and undo_edit
//! with OpenHands' semantics and messages (the students we train must see
//! the same observations the reference scaffold produced). The editor
//! works on whole file contents on the host side; reading and writing go
//! through a [`Files`] implementation (the sandbox's second bash session,
//! or a local directory), and it refuses paths outside the repository root.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Lines of context around an edit in the snippet shown back.
const SNIPPET_CONTEXT: usize = 4;
/// Undo steps kept per file.
const MAX_HISTORY: usize = 10;

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    File,
    Dir,
}

/// Where the editor reads and writes.
pub trait Files {
    fn kind(&mut self, path: &Path) -> impl std::future::Future<Output = std::io::Result<Kind>>;
    fn read(&mut self, path: &Path) -> impl std::future::Future<Output = std::io::Result<String>>;
    fn write(&mut self, path: &Path, content: &str) -> impl std::future::Future<Output = std::io::Result<()>>;
    /// Entries up to two levels deep (not hidden, directories with a
    /// trailing `/`, sorted), and how many hidden entries the top level has.
    fn tree(&mut self, path: &Path) -> impl std::future::Future<Output = std::io::Result<(Vec<String>, usize)>>;
}

/// An editor command with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    View { path: String, view_range: Option<Vec<i64>> },
    Create { path: String, file_text: Option<String> },
    StrReplace { path: String, old_str: Option<String>, new_str: Option<String> },
    Insert { path: String, insert_line: Option<i64>, new_str: Option<String> },
    UndoEdit { path: String },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::View { .. } => "view",
            Command::Create { .. } => "create",
            Command::StrReplace { .. } => "str_replace",
            Command::Insert { .. } => "insert",
            Command::UndoEdit { .. } => "undo_edit",
        }
    }

    fn path(&self) -> &str {
        match self {
            Command::View { path, .. }
            | Command::Create { path, .. }
            | Command::StrReplace { path, .. }
            | Command::Insert { path, .. }
            | Command::UndoEdit { path } => path,
        }
    }
}

/// The editor of one episode: its repository root and undo history.
pub struct Editor {
    root: PathBuf,
    history: HashMap<PathBuf, Vec<String>>,
}

fn invalid(parameter: &str, value: impl std::fmt::Display, hint: &str) -> String {
    format!("Invalid `{parameter}` parameter: {value}. {hint}")
}

fn missing(command: &str, parameter: &str) -> String {
    format!("Parameter `{parameter}` is required for command: {command}.")
}

/// `cat -n`-style numbering, as OpenHands shows file content.
fn numbered(content: &str, description: &str, start: usize) -> String {
    let body: Vec<String> = content.split('\n').enumerate().map(|(i, l)| format!("{:6}\t{l}", i + start)).collect();
    format!("Here's the result of running `cat -n` on {description}:\n{}\n", body.join("\n"))
}

/// Lines `start..=end` (1-based) of a text, with their line endings.
fn line_range(content: &str, start: usize, end: usize) -> String {
    content.split_inclusive('\n').enumerate().filter(|(i, _)| *i + 1 >= start && *i < end).map(|(_, l)| l).collect()
}

fn count_lines(content: &str) -> usize {
    content.split_inclusive('\n').count()
}

impl Editor {
    pub fn new(root: &Path) -> Editor {
        Editor { root: root.to_path_buf(), history: HashMap::new() }
    }

    fn push_history(&mut self, path: &Path, content: String) {
        let h = self.history.entry(path.to_path_buf()).or_default();
        h.push(content);
        if h.len() > MAX_HISTORY {
            h.remove(0);
        }
    }

    /// Runs a command; `Err` carries the message the model reads.
    pub async fn run<F: Files>(&mut self, files: &mut F, command: Command) -> Result<String, String> {
        let raw = command.path().to_string();
        let path = PathBuf::from(&raw);
        if !path.is_absolute() {
            let mut hint = "The path should be an absolute path, starting with `/`.".to_string();
            let suggestion = self.root.join(&path);
            if files.kind(&suggestion).await.map_err(|e| e.to_string())? != Kind::Missing {
                hint.push_str(&format!(" Maybe you meant {}?", suggestion.display()));
            }
            return Err(invalid("path", &raw, &hint));
        }
        let normal = normalize(&path);
        if !normal.starts_with(&self.root) {
            return Err(invalid(
                "path",
                &raw,
                &format!("The path is outside the repository; only paths under {} can be used.", self.root.display()),
            ));
        }
        let kind = files.kind(&normal).await.map_err(|e| e.to_string())?;
        let name = command.name();
        match (&command, kind) {
            (Command::Create { .. }, Kind::File | Kind::Dir) => {
                return Err(invalid(
                    "path",
                    &raw,
                    &format!("File already exists at: {raw}. Cannot overwrite files using command `create`."),
                ))
            }
            (Command::Create { .. }, Kind::Missing) => {}
            (_, Kind::Missing) => {
                return Err(invalid(
                    "path",
                    &raw,
                    &format!("The path {raw} does not exist. Please provide a valid path."),
                ))
            }
            (Command::View { .. }, _) => {}
            (_, Kind::Dir) => {
                return Err(invalid(
                    "path",
                    &raw,
                    &format!("The path {raw} is a directory and only the `view` command can be used on directories."),
                ))
            }
            _ => {}
        }
        let io = |e: std::io::Error| format!("Ran into {e} while trying to access {raw}");
        match command {
            Command::View { view_range, .. } if kind == Kind::Dir => {
                if view_range.as_ref().is_some_and(|r| !r.is_empty()) {
                    return Err(invalid(
                        "view_range",
                        format!("{:?}", view_range.unwrap_or_default()),
                        "The `view_range` parameter is not allowed when `path` points to a directory.",
                    ));
                }
                let (entries, hidden) = files.tree(&normal).await.map_err(io)?;
                let mut out = format!(
                    "Here's the files and directories up to 2 levels deep in {raw}, excluding hidden items:\n{}",
                    entries.join("\n")
                );
                if hidden > 0 {
                    out.push_str(&format!(
                        "\n\n{hidden} hidden files/directories in this directory are excluded. You can use 'ls -la {raw}' to see them."
                    ));
                }
                Ok(out)
            }
            Command::View { view_range, .. } => {
                let content = files.read(&normal).await.map_err(io)?;
                let Some(range) = view_range.filter(|r| !r.is_empty()) else {
                    return Ok(numbered(&content, &raw, 1));
                };
                let shown = format!("{range:?}");
                if range.len() != 2 {
                    return Err(invalid("view_range", shown, "It should be a list of two integers."));
                }
                let lines = count_lines(&content) as i64;
                let (start, mut end) = (range[0], range[1]);
                if start < 1 || start > lines {
                    return Err(invalid(
                        "view_range",
                        shown,
                        &format!("Its first element `{start}` should be within the range of lines of the file: [1, {lines}]."),
                    ));
                }
                let mut warning = None;
                if end == -1 {
                    end = lines;
                } else if end > lines {
                    warning = Some(format!("We only show up to {lines} since there's only {lines} lines in this file"));
                    end = lines;
                }
                if end < start {
                    return Err(invalid(
                        "view_range",
                        shown,
                        &format!("Its second element `{end}` should be greater than or equal to the first element `{start}`."),
                    ));
                }
                let text = line_range(&content, start as usize, end as usize);
                let mut out = numbered(&text.lines().collect::<Vec<_>>().join("\n"), &raw, start as usize);
                if let Some(w) = warning {
                    out.push_str(&format!("\nNOTE: {w}\n"));
                }
                Ok(out)
            }
            Command::Create { file_text, .. } => {
                let text = file_text.ok_or_else(|| missing(name, "file_text"))?;
                files.write(&normal, &text).await.map_err(io)?;
                self.push_history(&normal, text);
                Ok(format!("File created successfully at: {raw}"))
            }
            Command::StrReplace { old_str, new_str, .. } => {
                let old = old_str.ok_or_else(|| missing(name, "old_str"))?;
                if new_str.as_deref() == Some(old.as_str()) {
                    return Err(invalid(
                        "new_str",
                        &old,
                        "No replacement was performed. `new_str` and `old_str` must be different.",
                    ));
                }
                let new = new_str.unwrap_or_default();
                let content = files.read(&normal).await.map_err(io)?;
                let hits: Vec<usize> = content.match_indices(old.as_str()).map(|(i, _)| i).collect();
                let line_of = |idx: usize| content[..idx].matches('\n').count() + 1;
                match hits.as_slice() {
                    [] => {
                        Err(format!("No replacement was performed, old_str `{old}` did not appear verbatim in {raw}."))
                    }
                    [idx] => {
                        let idx = *idx;
                        let replaced = format!("{}{}{}", &content[..idx], new, &content[idx + old.len()..]);
                        files.write(&normal, &replaced).await.map_err(io)?;
                        let line = line_of(idx);
                        self.push_history(&normal, content);
                        let start = line.saturating_sub(SNIPPET_CONTEXT);
                        let end = line + SNIPPET_CONTEXT + new.matches('\n').count();
                        let snippet = line_range(&replaced, start + 1, end);
                        Ok(format!(
                            "The file {raw} has been edited. {}Review the changes and make sure they are as expected. Edit the file again if necessary.",
                            numbered(&snippet, &format!("a snippet of {raw}"), start + 1)
                        ))
                    }
                    many => {
                        let mut lines: Vec<usize> = many.iter().map(|i| line_of(*i)).collect();
                        lines.dedup();
                        Err(format!(
                            "No replacement was performed. Multiple occurrences of old_str `{old}` in lines {lines:?}. Please ensure it is unique."
                        ))
                    }
                }
            }
            Command::Insert { insert_line, new_str, .. } => {
                let line = insert_line.ok_or_else(|| missing(name, "insert_line"))?;
                let new = new_str.ok_or_else(|| missing(name, "new_str"))?;
                let content = files.read(&normal).await.map_err(io)?;
                let lines = count_lines(&content);
                if line < 0 || line as usize > lines {
                    return Err(invalid(
                        "insert_line",
                        line,
                        &format!("It should be within the range of allowed values: [0, {lines}]"),
                    ));
                }
                let line = line as usize;
                let mut updated = line_range(&content, 1, line);
                if !updated.is_empty() && !updated.ends_with('\n') {
                    updated.push('\n');
                }
                let new_lines: Vec<&str> = new.split('\n').collect();
                for l in &new_lines {
                    updated.push_str(l);
                    updated.push('\n');
                }
                updated.push_str(&line_range(&content, line + 1, usize::MAX));
                files.write(&normal, &updated).await.map_err(io)?;
                self.push_history(&normal, content);
                let start = line.saturating_sub(SNIPPET_CONTEXT);
                let end = (lines + new_lines.len()).min(line + SNIPPET_CONTEXT + new_lines.len());
                let snippet = line_range(&updated, start + 1, end);
                Ok(format!(
                    "The file {raw} has been edited. {}Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary.",
                    numbered(&snippet, "a snippet of the edited file", (line + 1).saturating_sub(SNIPPET_CONTEXT).max(1))
                ))
            }
            Command::UndoEdit { .. } => {
                let previous = self
                    .history
                    .get_mut(&normal)
                    .and_then(Vec::pop)
                    .ok_or_else(|| format!("No edit history found for {raw}."))?;
                files.write(&normal, &previous).await.map_err(io)?;
                Ok(format!("Last edit to {raw} undone successfully. {}", numbered(&previous, &raw, 1)))
            }
        }
    }
}

/// Resolves `.` and `..` without touching the file system (a symlink could
/// still point out; the sandbox is what keeps those contained).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Files in a local directory (the `local` sandbox, and tests).
pub struct LocalFiles;

impl Files for LocalFiles {
    async fn kind(&mut self, path: &Path) -> std::io::Result<Kind> {
        Ok(match tokio::fs::metadata(path).await {
            Ok(m) if m.is_dir() => Kind::Dir,
            Ok(_) => Kind::File,
            Err(_) => Kind::Missing,
        })
    }

    async fn read(&mut self, path: &Path) -> std::io::Result<String> {
        tokio::fs::read_to_string(path).await
    }

    async fn write(&mut self, path: &Path, content: &str) -> std::io::Result<()> {
        tokio::fs::write(path, content).await
    }

    async fn tree(&mut self, path: &Path) -> std::io::Result<(Vec<String>, usize)> {
        // (path, is_dir), sorted by path before directories get their `/`,
        // as `find … | sort` orders them.
        let mut found = vec![(path.display().to_string(), true)];
        let mut hidden = 0;
        let mut level1 = tokio::fs::read_dir(path).await?;
        while let Some(e) = level1.next_entry().await? {
            if e.file_name().to_string_lossy().starts_with('.') {
                hidden += 1;
                continue;
            }
            let p = e.path();
            let is_dir = p.is_dir();
            found.push((p.display().to_string(), is_dir));
            if is_dir {
                let mut level2 = tokio::fs::read_dir(&p).await?;
                while let Some(e2) = level2.next_entry().await? {
                    if !e2.file_name().to_string_lossy().starts_with('.') {
                        let p2 = e2.path();
                        found.push((p2.display().to_string(), p2.is_dir()));
                    }
                }
            }
        }
        found.sort();
        Ok((found.into_iter().map(|(p, d)| if d { format!("{p}/") } else { p }).collect(), hidden))
    }
}

/// Files seen through a bash session (the sandbox's second session): reads
/// with `base64`, writes through a here-document of base64 lines (the
/// terminal limits input lines to 4 KiB), listings with `find`.
pub struct SessionFiles<'a> {
    pub session: &'a mut crate::session::BashSession,
}

const FILES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl SessionFiles<'_> {
    async fn sh(&mut self, command: &str) -> std::io::Result<String> {
        // File contents can be large: the editor's session keeps them whole.
        self.session.output_limit = usize::MAX / 4;
        let out = self.session.run(command, FILES_TIMEOUT).await?;
        match out.exit_code {
            Some(0) => Ok(out.output),
            _ => Err(std::io::Error::other(out.output.trim().to_string())),
        }
    }
}

fn q(path: &Path) -> String {
    swestar_vocab::shell::shell_quote(&path.to_string_lossy())
}

impl Files for SessionFiles<'_> {
    async fn kind(&mut self, path: &Path) -> std::io::Result<Kind> {
        let p = q(path);
        let out = self
            .sh(&format!("if [ -d {p} ]; then echo dir; elif [ -e {p} ]; then echo file; else echo missing; fi"))
            .await?;
        Ok(match out.trim() {
            "dir" => Kind::Dir,
            "file" => Kind::File,
            _ => Kind::Missing,
        })
    }

    async fn read(&mut self, path: &Path) -> std::io::Result<String> {
        use base64::Engine;
        let out = self.sh(&format!("base64 -w0 -- {}", q(path))).await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(out.trim())
            .map_err(|e| std::io::Error::other(format!("unreadable content: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| std::io::Error::other("the editor only supports UTF-8 files; use bash commands for this one"))
    }

    async fn write(&mut self, path: &Path, content: &str) -> std::io::Result<()> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
        let mut script = format!("base64 -d > {} <<'__SWESTAR_EOF__'\n", q(path));
        for chunk in encoded.as_bytes().chunks(76) {
            script.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            script.push('\n');
        }
        script.push_str("__SWESTAR_EOF__");
        self.sh(&script).await.map(|_| ())
    }

    async fn tree(&mut self, path: &Path) -> std::io::Result<(Vec<String>, usize)> {
        let p = q(path);
        let hidden = self.sh(&format!("find -L {p} -mindepth 1 -maxdepth 1 -name '.*' | wc -l")).await?;
        let listing = self
            .sh(&format!(
                "find -L {p} -maxdepth 2 -not \\( -path {p}'/.*' -o -path {p}'/*/.*' \\) -printf '%p\\t%y\\n' | LC_ALL=C sort"
            ))
            .await?;
        let entries = listing
            .lines()
            .filter_map(|l| l.rsplit_once('\t'))
            .map(|(p, t)| if t == "d" { format!("{p}/") } else { p.to_string() })
            .collect();
        Ok((entries, hidden.trim().parse().unwrap_or(0)))
    }
}
