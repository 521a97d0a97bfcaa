//! The tool-call protocol for models without native tool tokens
//! (Qwen2.5-Coder): the system prompt lists the functions and the calling
//! format `<function=NAME>\n<parameter=P>value</parameter>\n</function>`,
//! `</function` is a stop word, and each reply must carry exactly one call.
//! The format, the function listing, the stop-word repair and the argument
//! checks follow OpenHands' function-call converter, so trajectories look
//! the same to a student trained on either.

use std::collections::BTreeMap;
use std::fmt;

/// The model stops generating here; the parser puts the tag back.
pub const STOP_WORDS: &[&str] = &["</function"];

/// A parameter's type as the model is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    /// A JSON array, e.g. `[1, 20]`.
    Array,
}

impl ParamType {
    fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Array => "array",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub required: bool,
    pub description: &'static str,
    /// Allowed values, when the parameter is an enumeration.
    pub allowed: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub params: Vec<ParamSpec>,
}

/// A parsed argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    Int(i64),
    Array(Vec<serde_json::Value>),
}

impl Arg {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Arg::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Arg::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// One function call from a model reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub args: BTreeMap<String, Arg>,
}

/// A reply split into the model's reasoning and its call.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Text before the call.
    pub thought: String,
    pub call: ToolCall,
}

/// What was wrong with a reply; its text is what the model reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    NoCall,
    SeveralCalls(usize),
    /// `<function=NAME` with no `>`.
    NameNotClosed,
    /// `<function=NAME>` followed by anything but a line break.
    NoNewlineAfterName {
        name: String,
    },
    /// No `</function>` after the call.
    CallNotClosed {
        name: String,
    },
    /// `<parameter=NAME` with no `>`.
    ParameterNameNotClosed,
    /// A parameter's value with no `</parameter>` before `</function>`.
    ParameterNotClosed {
        name: String,
    },
    UnknownFunction {
        name: String,
        known: Vec<String>,
    },
    UnknownParameter {
        function: String,
        name: String,
        allowed: Vec<String>,
    },
    DuplicateParameter {
        name: String,
    },
    NotInteger {
        name: String,
    },
    NotArray {
        name: String,
    },
    NotAllowed {
        name: String,
        allowed: Vec<String>,
    },
    Missing {
        function: String,
        names: Vec<String>,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NoCall => write!(
                f,
                "Your reply contained no function call. Reply with exactly one call in the format \
                 <function=NAME>\\n<parameter=PARAM>value</parameter>\\n</function>, or call submit when you are done."
            ),
            FormatError::SeveralCalls(n) => {
                write!(f, "Your reply contained {n} function calls. Call exactly one function per reply.")
            }
            FormatError::NameNotClosed => write!(
                f,
                "Your function call is malformed: the function name is not closed with '>'. \
                 Write <function=NAME>\\n<parameter=PARAM>value</parameter>\\n</function>"
            ),
            FormatError::NoNewlineAfterName { name } => write!(
                f,
                "Your function call is malformed: <function={name}> must be followed by a newline. \
                 Write <function={name}>\\n<parameter=PARAM>value</parameter>\\n</function>"
            ),
            FormatError::CallNotClosed { name } => write!(
                f,
                "Your call of '{name}' is not closed: end it with </function> on its own line (and keep \
                 the reply short enough to finish)."
            ),
            FormatError::ParameterNameNotClosed => write!(
                f,
                "Your function call is malformed: a parameter name is not closed with '>'. \
                 Write <parameter=PARAM>value</parameter>"
            ),
            FormatError::ParameterNotClosed { name } => {
                write!(f, "Parameter '{name}' is not closed: end its value with </parameter> before </function>.")
            }
            FormatError::UnknownFunction { name, known } => {
                write!(f, "There is no function named '{name}'. The functions are: {}.", known.join(", "))
            }
            FormatError::UnknownParameter { function, name, allowed } => write!(
                f,
                "Function '{function}' has no parameter '{name}'. Its parameters are: {}.",
                allowed.join(", ")
            ),
            FormatError::DuplicateParameter { name } => write!(f, "Parameter '{name}' was given more than once."),
            FormatError::NotInteger { name } => write!(f, "Parameter '{name}' must be an integer."),
            FormatError::NotArray { name } => {
                write!(f, "Parameter '{name}' must be a JSON array, for example [1, 10].")
            }
            FormatError::NotAllowed { name, allowed } => {
                write!(f, "Parameter '{name}' must be one of: {}.", allowed.join(", "))
            }
            FormatError::Missing { function, names } => {
                write!(f, "Function '{function}' needs the parameters: {}.", names.join(", "))
            }
        }
    }
}

/// The function listing the system prompt carries.
pub fn describe(tools: &[ToolSpec]) -> String {
    let mut out = String::new();
    for (i, tool) in tools.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("---- BEGIN FUNCTION #{}: {} ----\n", i + 1, tool.name));
        out.push_str(&format!("Description: {}\n", tool.description));
        if tool.params.is_empty() {
            out.push_str("No parameters are required for this function.\n");
        } else {
            out.push_str("Parameters:\n");
            for (j, p) in tool.params.iter().enumerate() {
                let status = if p.required { "required" } else { "optional" };
                let mut desc = p.description.to_string();
                if !p.allowed.is_empty() {
                    let values: Vec<String> = p.allowed.iter().map(|v| format!("`{v}`")).collect();
                    desc.push_str(&format!("\nAllowed values: [{}]", values.join(", ")));
                }
                out.push_str(&format!("  ({}) {} ({}, {status}): {desc}\n", j + 1, p.name, p.ty.name()));
            }
        }
        out.push_str(&format!("---- END FUNCTION #{} ----\n", i + 1));
    }
    out
}

/// What the system prompt appends: the functions and how to call them.
pub fn system_suffix(tools: &[ToolSpec]) -> String {
    format!(
        "\nYou have access to the following functions:\n\n{}\n\
         If you choose to call a function ONLY reply in the following format with NO suffix:\n\n\
         <function=example_function_name>\n\
         <parameter=example_parameter_1>value_1</parameter>\n\
         <parameter=example_parameter_2>\n\
         This is the value for the second parameter\n\
         that can span\n\
         multiple lines\n\
         </parameter>\n\
         </function>\n\n\
         <IMPORTANT>\n\
         Reminder:\n\
         - Function calls MUST follow the specified format, start with <function= and end with </function>\n\
         - Required parameters MUST be specified\n\
         - Only call one function at a time\n\
         - You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after.\n\
         </IMPORTANT>\n",
        describe(tools)
    )
}

/// The user message that carries a tool's result back to the model.
/// A call written in the format [`parse`] reads (what a model replies; the
/// scripted teacher and training data use it).
pub fn format_call(name: &str, params: &[(&str, &str)]) -> String {
    let mut s = format!("<function={name}>\n");
    for (k, v) in params {
        s.push_str(&format!("<parameter={k}>{v}</parameter>\n"));
    }
    s.push_str("</function>");
    s
}

pub fn observation(tool: &str, text: &str) -> String {
    format!("EXECUTION RESULT of [{tool}]:\n{text}")
}

/// Servers stop before the stop word and do not return it: put it back.
fn restore_stop_word(content: &str) -> String {
    if content.matches("<function=").count() == 1 && !content.contains("</function>") {
        if content.ends_with("</") {
            return format!("{}function>", content.trim_end());
        }
        // Prose after the last closed parameter (and no parameter opened
        // after it) was not cut by the stop word: the call was never ended.
        let call = &content[content.find("<function=").expect("counted")..];
        if let Some(i) = call.rfind("</parameter>") {
            let tail = &call[i + "</parameter>".len()..];
            if !tail.trim().is_empty() && !tail.contains("<parameter=") {
                return content.to_string();
            }
        }
        return format!("{content}\n</function>");
    }
    content.to_string()
}

/// Parses a model reply into its reasoning and exactly one function call,
/// checked against the tools' parameters.
pub fn parse(content: &str, tools: &[ToolSpec]) -> Result<Parsed, FormatError> {
    let content = restore_stop_word(content);
    let calls = content.matches("<function=").count();
    match calls {
        0 => return Err(FormatError::NoCall),
        1 => {}
        n => return Err(FormatError::SeveralCalls(n)),
    }
    let start = content.find("<function=").expect("counted");
    let thought = content[..start].trim().to_string();
    let rest = &content[start + "<function=".len()..];
    let name_end = rest.find(['>', '\n']).filter(|&i| rest[i..].starts_with('>')).ok_or(FormatError::NameNotClosed)?;
    let name = rest[..name_end].trim().to_string();
    let after = &rest[name_end + 1..];
    let body = after
        .strip_prefix('\n')
        .or_else(|| after.strip_prefix("\r\n"))
        .ok_or_else(|| FormatError::NoNewlineAfterName { name: name.clone() })?;
    let body = &body[..body.find("</function>").ok_or_else(|| FormatError::CallNotClosed { name: name.clone() })?];

    let tool = tools.iter().find(|t| t.name == name).ok_or_else(|| FormatError::UnknownFunction {
        name: name.clone(),
        known: tools.iter().map(|t| t.name.to_string()).collect(),
    })?;
    let mut args = BTreeMap::new();
    let mut cursor = body;
    while let Some(open) = cursor.find("<parameter=") {
        let after_open = &cursor[open + "<parameter=".len()..];
        let name_end = after_open
            .find(['>', '\n'])
            .filter(|&i| after_open[i..].starts_with('>'))
            .ok_or(FormatError::ParameterNameNotClosed)?;
        let pname = after_open[..name_end].trim().to_string();
        let value_and_rest = &after_open[name_end + 1..];
        // A value runs to its own close tag, never into the next parameter.
        let close = value_and_rest
            .find("</parameter>")
            .filter(|&c| value_and_rest.find("<parameter=").is_none_or(|next| c < next))
            .ok_or_else(|| FormatError::ParameterNotClosed { name: pname.clone() })?;
        let raw = value_and_rest[..close].trim();
        cursor = &value_and_rest[close + "</parameter>".len()..];

        let spec = tool.params.iter().find(|p| p.name == pname).ok_or_else(|| FormatError::UnknownParameter {
            function: tool.name.to_string(),
            name: pname.clone(),
            allowed: tool.params.iter().map(|p| p.name.to_string()).collect(),
        })?;
        let value = match spec.ty {
            ParamType::String => Arg::Str(raw.to_string()),
            ParamType::Integer => Arg::Int(raw.parse().map_err(|_| FormatError::NotInteger { name: pname.clone() })?),
            ParamType::Array => match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(serde_json::Value::Array(items)) => Arg::Array(items),
                _ => return Err(FormatError::NotArray { name: pname }),
            },
        };
        if !spec.allowed.is_empty() && !value.as_str().is_some_and(|v| spec.allowed.contains(&v)) {
            return Err(FormatError::NotAllowed {
                name: pname,
                allowed: spec.allowed.iter().map(|s| s.to_string()).collect(),
            });
        }
        if args.insert(pname.clone(), value).is_some() {
            return Err(FormatError::DuplicateParameter { name: pname });
        }
    }
    let missing: Vec<String> =
        tool.params.iter().filter(|p| p.required && !args.contains_key(p.name)).map(|p| p.name.to_string()).collect();
    if !missing.is_empty() {
        return Err(FormatError::Missing { function: tool.name.to_string(), names: missing });
    }
    Ok(Parsed { thought, call: ToolCall { name, args } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "execute_bash",
                description: "Run a command in a persistent bash session.",
                params: vec![ParamSpec {
                    name: "command",
                    ty: ParamType::String,
                    required: true,
                    description: "The command.",
                    allowed: &[],
                }],
            },
            ToolSpec {
                name: "str_replace_editor",
                description: "View and edit files.",
                params: vec![
                    ParamSpec {
                        name: "command",
                        ty: ParamType::String,
                        required: true,
                        description: "What to do.",
                        allowed: &["view", "create"],
                    },
                    ParamSpec {
                        name: "path",
                        ty: ParamType::String,
                        required: true,
                        description: "A path.",
                        allowed: &[],
                    },
                    ParamSpec {
                        name: "view_range",
                        ty: ParamType::Array,
                        required: false,
                        description: "Lines.",
                        allowed: &[],
                    },
                    ParamSpec {
                        name: "insert_line",
                        ty: ParamType::Integer,
                        required: false,
                        description: "A line.",
                        allowed: &[],
                    },
                ],
            },
            ToolSpec { name: "submit", description: "Finish.", params: vec![] },
        ]
    }

    #[test]
    fn the_listing_names_types_requirements_and_allowed_values() {
        let d = describe(&tools());
        assert!(d.starts_with("---- BEGIN FUNCTION #1: execute_bash ----\nDescription: Run a command"), "{d}");
        assert!(
            d.contains("  (1) command (string, required): What to do.\nAllowed values: [`view`, `create`]\n"),
            "{d}"
        );
        assert!(d.contains("  (3) view_range (array, optional): Lines.\n"), "{d}");
        assert!(
            d.contains("---- BEGIN FUNCTION #3: submit ----\nDescription: Finish.\nNo parameters are required"),
            "{d}"
        );
        let s = system_suffix(&tools());
        assert!(s.contains("<function=example_function_name>\n<parameter=example_parameter_1>value_1</parameter>"));
        assert!(s.contains("Only call one function at a time"));
    }

    #[test]
    fn parses_reasoning_multiline_values_integers_and_arrays() {
        let reply = "Let me look.\n<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/repo/a.py</parameter>\n<parameter=view_range>[1, 20]</parameter>\n<parameter=insert_line> 7 </parameter>\n</function>";
        let p = parse(reply, &tools()).unwrap();
        assert_eq!(p.thought, "Let me look.");
        assert_eq!(p.call.name, "str_replace_editor");
        assert_eq!(p.call.args["path"], Arg::Str("/repo/a.py".into()));
        assert_eq!(p.call.args["view_range"], Arg::Array(vec![1.into(), 20.into()]));
        assert_eq!(p.call.args["insert_line"], Arg::Int(7));
        let reply = "<function=execute_bash>\n<parameter=command>\nfor f in *.py; do\n  wc -l $f\ndone\n</parameter>\n</function>";
        assert_eq!(
            parse(reply, &tools()).unwrap().call.args["command"],
            Arg::Str("for f in *.py; do\n  wc -l $f\ndone".into())
        );
    }

    #[test]
    fn the_stop_word_is_restored() {
        // The server stopped at `</function`: the reply ends without it.
        let reply = "<function=execute_bash>\n<parameter=command>ls</parameter>\n";
        assert_eq!(parse(reply, &tools()).unwrap().call.args["command"], Arg::Str("ls".into()));
        let reply = "<function=execute_bash>\n<parameter=command>ls</parameter>\n</";
        assert!(parse(reply, &tools()).is_ok());
        assert_eq!(parse("<function=submit>\n", &tools()).unwrap().call.name, "submit");
    }

    #[test]
    fn every_mistake_becomes_a_message_for_the_model() {
        let t = tools();
        let cases: Vec<(&str, FormatError)> = vec![
            ("I think it is fixed.", FormatError::NoCall),
            (
                "<function=submit>\n</function><function=submit>\n</function>",
                FormatError::SeveralCalls(2),
            ),
            (
                "<function=execute_bash><parameter=command>ls</parameter></function>",
                FormatError::NoNewlineAfterName { name: "execute_bash".into() },
            ),
            ("<function=execute_bash\n<parameter=command>ls</parameter>\n</function>", FormatError::NameNotClosed),
            (
                "<function=execute_bash>\n<parameter=command>ls\n</function>",
                FormatError::ParameterNotClosed { name: "command".into() },
            ),
            (
                "<function=str_replace_editor>\n<parameter=command>view\n<parameter=path>a</parameter>\n</function>",
                FormatError::ParameterNotClosed { name: "command".into() },
            ),
            (
                "<function=execute_bash>\n<parameter=command\nls</parameter>\n</function>",
                FormatError::ParameterNameNotClosed,
            ),
            (
                "<function=execute_bash>\n<parameter=command>ls</parameter>\nThis lists the files.",
                FormatError::CallNotClosed { name: "execute_bash".into() },
            ),
            (
                "<function=run>\n</function>",
                FormatError::UnknownFunction {
                    name: "run".into(),
                    known: vec!["execute_bash".into(), "str_replace_editor".into(), "submit".into()],
                },
            ),
            (
                "<function=execute_bash>\n<parameter=cmd>ls</parameter>\n</function>",
                FormatError::UnknownParameter {
                    function: "execute_bash".into(),
                    name: "cmd".into(),
                    allowed: vec!["command".into()],
                },
            ),
            (
                "<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>a</parameter>\n<parameter=insert_line>seven</parameter>\n</function>",
                FormatError::NotInteger { name: "insert_line".into() },
            ),
            (
                "<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>a</parameter>\n<parameter=view_range>1-20</parameter>\n</function>",
                FormatError::NotArray { name: "view_range".into() },
            ),
            (
                "<function=str_replace_editor>\n<parameter=command>delete</parameter>\n<parameter=path>a</parameter>\n</function>",
                FormatError::NotAllowed { name: "command".into(), allowed: vec!["view".into(), "create".into()] },
            ),
            (
                "<function=str_replace_editor>\n<parameter=command>view</parameter>\n</function>",
                FormatError::Missing { function: "str_replace_editor".into(), names: vec!["path".into()] },
            ),
            (
                "<function=execute_bash>\n<parameter=command>ls</parameter>\n<parameter=command>pwd</parameter>\n</function>",
                FormatError::DuplicateParameter { name: "command".into() },
            ),
        ];
        for (reply, expected) in cases {
            let got = parse(reply, &t).unwrap_err();
            assert_eq!(got, expected, "{reply}");
            assert!(!got.to_string().is_empty());
        }
        assert!(FormatError::NoCall.to_string().contains("<function=NAME>"));
        // Each kind of mistake has its own words.
        let unclosed = FormatError::ParameterNotClosed { name: "command".into() }.to_string();
        assert!(unclosed.contains("'command' is not closed") && !unclosed.contains("newline"), "{unclosed}");
    }

    #[test]
    fn observations_use_the_execution_result_header() {
        assert_eq!(observation("execute_bash", "ok"), "EXECUTION RESULT of [execute_bash]:\nok");
    }
}
