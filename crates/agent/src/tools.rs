//! The four tools an agent has — `think`, `execute_bash`,
//! `str_replace_editor`, `submit` — as the model sees them (specs for the
//! system prompt) and as they run (dispatch to the bash session and the
//! editor). Descriptions are ours; names, parameters and semantics follow
//! OpenHands so that trajectories transfer.

use std::time::Duration;

use super::editor::{Command, Editor, Files};
use super::protocol::{Arg, ParamSpec, ParamType, ToolCall, ToolSpec};
use super::session::BashSession;

pub const THINK: &str = "think";
pub const EXECUTE_BASH: &str = "execute_bash";
pub const EDITOR: &str = "str_replace_editor";
pub const SUBMIT: &str = "submit";

/// The tool set, in the order the system prompt lists it.
pub fn specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: EXECUTE_BASH,
            description: "Run a bash command in a persistent shell session: the working directory, \
                          environment variables and background jobs carry over between calls. \
                          Commands that run long should be started in the background with output \
                          redirected to a file. A command that exceeds its timeout is interrupted; \
                          the session stays. Long output is cut in the middle.",
            params: vec![
                ParamSpec {
                    name: "command",
                    ty: ParamType::String,
                    required: true,
                    description: "The bash command to run. It may span several lines.",
                    allowed: &[],
                },
                ParamSpec {
                    name: "timeout",
                    ty: ParamType::Integer,
                    required: false,
                    description: "Seconds before the command is interrupted (default 120).",
                    allowed: &[],
                },
            ],
        },
        ToolSpec {
            name: EDITOR,
            description: "View, create and edit files. `view` shows a file with line numbers (like \
                          `cat -n`) or lists a directory two levels deep. `create` writes a new file. \
                          `str_replace` replaces one exact, unique occurrence of `old_str` with \
                          `new_str`. `insert` adds `new_str` after line `insert_line` (0 for the \
                          top). `undo_edit` reverts the last edit of a file. Paths must be absolute.",
            params: vec![
                ParamSpec {
                    name: "command",
                    ty: ParamType::String,
                    required: true,
                    description: "The operation.",
                    allowed: &["view", "create", "str_replace", "insert", "undo_edit"],
                },
                ParamSpec {
                    name: "path",
                    ty: ParamType::String,
                    required: true,
                    description: "Absolute path of the file or directory.",
                    allowed: &[],
                },
                ParamSpec {
                    name: "file_text",
                    ty: ParamType::String,
                    required: false,
                    description: "For `create`: the content of the new file.",
                    allowed: &[],
                },
                ParamSpec {
                    name: "old_str",
                    ty: ParamType::String,
                    required: false,
                    description:
                        "For `str_replace`: the exact text to replace, whitespace included; it must occur once.",
                    allowed: &[],
                },
                ParamSpec {
                    name: "new_str",
                    ty: ParamType::String,
                    required: false,
                    description:
                        "For `str_replace`: the replacement (empty to delete). For `insert`: the text to insert.",
                    allowed: &[],
                },
                ParamSpec {
                    name: "insert_line",
                    ty: ParamType::Integer,
                    required: false,
                    description: "For `insert`: the line after which to insert.",
                    allowed: &[],
                },
                ParamSpec {
                    name: "view_range",
                    ty: ParamType::Array,
                    required: false,
                    description: "For `view` of a file: [first, last] line to show; last may be -1 for the end.",
                    allowed: &[],
                },
            ],
        },
        ToolSpec {
            name: THINK,
            description: "Write down reasoning or a plan. It changes nothing and returns nothing new.",
            params: vec![ParamSpec {
                name: "thought",
                ty: ParamType::String,
                required: true,
                description: "The thought.",
                allowed: &[],
            }],
        },
        ToolSpec {
            name: SUBMIT,
            description: "Finish: submit the changes made to the repository as the solution. Call it \
                          once the issue is fixed and verified; it ends the task.",
            params: vec![],
        },
    ]
}

/// What running a tool call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The text the model reads back.
    Observation(String),
    /// The agent submitted.
    Submit,
}

fn str_arg(call: &ToolCall, name: &str) -> Option<String> {
    call.args.get(name).and_then(Arg::as_str).map(str::to_string)
}

/// Runs one parsed call against the episode's shell and editor.
pub async fn dispatch<F: Files>(
    call: &ToolCall,
    shell: &mut BashSession,
    editor: &mut Editor,
    files: &mut F,
    default_timeout: Duration,
) -> std::io::Result<Outcome> {
    match call.name.as_str() {
        THINK => Ok(Outcome::Observation("Your thought has been logged.".to_string())),
        SUBMIT => Ok(Outcome::Submit),
        EXECUTE_BASH => {
            let command = str_arg(call, "command").unwrap_or_default();
            let timeout = call
                .args
                .get("timeout")
                .and_then(Arg::as_int)
                .filter(|t| *t > 0)
                .map(|t| Duration::from_secs(t as u64))
                .unwrap_or(default_timeout);
            let out = shell.run(&command, timeout).await?;
            let mut text = out.output;
            if out.timed_out {
                text.push_str(&format!(
                    "\n[The command timed out after {} seconds and was interrupted. Run long commands in the background.]",
                    timeout.as_secs()
                ));
            } else if let Some(code) = out.exit_code {
                text.push_str(&format!("\n[Command finished with exit code {code}]"));
            }
            Ok(Outcome::Observation(text))
        }
        EDITOR => {
            let path = str_arg(call, "path").unwrap_or_default();
            let command = match str_arg(call, "command").as_deref() {
                Some("view") => Command::View {
                    path,
                    view_range: match call.args.get("view_range") {
                        Some(Arg::Array(items)) => Some(items.iter().filter_map(|v| v.as_i64()).collect()),
                        _ => None,
                    },
                },
                Some("create") => Command::Create { path, file_text: str_arg(call, "file_text") },
                Some("str_replace") => {
                    Command::StrReplace { path, old_str: str_arg(call, "old_str"), new_str: str_arg(call, "new_str") }
                }
                Some("insert") => Command::Insert {
                    path,
                    insert_line: call.args.get("insert_line").and_then(Arg::as_int),
                    new_str: str_arg(call, "new_str"),
                },
                _ => Command::UndoEdit { path },
            };
            Ok(Outcome::Observation(match editor.run(files, command).await {
                Ok(text) => text,
                Err(error) => format!("ERROR:\n{error}"),
            }))
        }
        other => Ok(Outcome::Observation(format!("ERROR:\nThere is no tool named {other}."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specs_parse_their_own_calls() {
        let specs = specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
        assert_eq!(names, [EXECUTE_BASH, EDITOR, THINK, SUBMIT]);
        let p = super::super::protocol::parse(
            "<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/r/a.py</parameter>\n<parameter=view_range>[1, -1]</parameter>\n</function>",
            &specs,
        )
        .unwrap();
        assert_eq!(p.call.args["view_range"], Arg::Array(vec![1.into(), (-1).into()]));
        assert!(super::super::protocol::parse("<function=submit>\n</function>", &specs).is_ok());
    }
}
