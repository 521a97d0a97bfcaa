//! Prompt templates (minijinja): the system prompt and the instance prompt
//! of an episode. The built-in ones ship in templates/prompts/; a workflow
//! may bring its own.

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

pub const SYSTEM: (&str, &str) = ("templates/prompts/system.j2", include_str!("../../../templates/prompts/system.j2"));
pub const INSTANCE: (&str, &str) =
    ("templates/prompts/instance.j2", include_str!("../../../templates/prompts/instance.j2"));

/// The templates of issue synthesis: a system message, the demonstration
/// issues (`demonstrations`: a list of problem statements), and the
/// instance (its fields plus `test_output` and `test_sources`).
pub const SYNTHESIS_SYSTEM: (&str, &str) = (
    "templates/prompts/issue_synthesis/system.j2",
    include_str!("../../../templates/prompts/issue_synthesis/system.j2"),
);
pub const SYNTHESIS_DEMONSTRATIONS: (&str, &str) = (
    "templates/prompts/issue_synthesis/demonstrations.j2",
    include_str!("../../../templates/prompts/issue_synthesis/demonstrations.j2"),
);
pub const SYNTHESIS_INSTANCE: (&str, &str) = (
    "templates/prompts/issue_synthesis/instance.j2",
    include_str!("../../../templates/prompts/issue_synthesis/instance.j2"),
);

/// What the templates see.
#[derive(Debug, Clone, Serialize)]
pub struct PromptContext<'a> {
    /// The repository's path in the sandbox.
    pub repo: &'a str,
    /// e.g. `swestar/ledger`
    pub repo_name: &'a str,
    pub instance_id: &'a str,
    pub problem_statement: &'a str,
    /// Every field of the instance row.
    pub instance: &'a serde_json::Value,
    /// The stage's `params`.
    pub params: &'a serde_json::Value,
}

/// Renders a template; errors name the template and line.
pub fn render(template: (&str, &str), ctx: &PromptContext<'_>) -> Result<String, String> {
    render_value(template, ctx)
}

/// Renders a template over any serializable context; an undefined name
/// is an error naming the template and line.
pub fn render_value(template: (&str, &str), ctx: &impl Serialize) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let (name, source) = template;
    let err = |e: minijinja::Error| format!("{name}:{}: {e}", e.line().unwrap_or(0));
    let tmpl = env.template_from_named_str(name, source).map_err(err)?;
    tmpl.render(minijinja::Value::from(minijinja::value::Serde(ctx))).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_prompts_render() {
        let ctx = PromptContext {
            repo: "/repo",
            repo_name: "swestar/ledger",
            instance_id: "i",
            problem_statement: "It breaks.",
            instance: &serde_json::json!({"FAIL_TO_PASS": ["t::a"]}),
            params: &serde_json::json!({"hint": "look at t"}),
        };
        let system = render(SYSTEM, &ctx).unwrap();
        assert!(system.contains("the repository is at /repo"), "{system}");
        let task = render(INSTANCE, &ctx).unwrap();
        assert!(task.contains("<issue_description>\nIt breaks.\n</issue_description>"), "{task}");
        let custom = render(("c.j2", "{{ instance.FAIL_TO_PASS[0] }} / {{ params.hint }}"), &ctx).unwrap();
        assert_eq!(custom, "t::a / look at t");
        let e = render(("custom.j2", "line one\n{{ nope }}"), &ctx).unwrap_err();
        assert!(e.starts_with("custom.j2:2:"), "{e}");
    }
}
