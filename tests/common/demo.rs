//! The scripted teacher and student of workflows/local-demo.toml: replies
//! that synthesize an issue for every example task, fix two of them in
//! rollout and one in evaluation, and give up on the rest.

use std::collections::HashMap;

use swestar::agent::protocol::format_call as call;
use swestar::agent::scripted::Reply;

use super::task_instances;

fn fix(sed: &str) -> Vec<Reply> {
    vec![Reply::text(call("execute_bash", &[("command", sed)])), Reply::text(call("submit", &[]))]
}

pub fn scripts() -> HashMap<String, Vec<Reply>> {
    let mut s = HashMap::new();
    let all = task_instances();
    for inst in &all {
        let name = inst["instance_id"].as_str().unwrap().rsplit('.').next().unwrap().to_string();
        // Synthesis: the instance prompt holds the bug's diff; its longest
        // removed line names the instance.
        let patch = inst["patch"].as_str().unwrap();
        let key = patch
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---") && l.trim().len() > 8)
            .max_by_key(|l| l.len())
            .unwrap()
            .to_string();
        let shared = all.iter().filter(|o| o["patch"].as_str().unwrap().contains(&key)).count();
        assert_eq!(shared, 1, "{key} names one bug");
        s.insert(key, vec![Reply::text(format!("Issue about {name}: it misbehaves.\n"))]);
    }
    // Rollout: the teacher fixes two of the synthesized issues.
    let currency = "sed -i 's/, parts\\[1\\]$/, parts[1].upper()/' ledger/parse.py";
    let sub = "sed -i '/def __sub__/a\\        self._check(other)' ledger/money.py";
    s.insert("Issue about currency_code_case:".into(), fix(currency));
    s.insert("Issue about sub_skips_currency_check:".into(), fix(sub));
    // Eval: the student fixes one original issue.
    s.insert("Lowercase currency codes are rejected".into(), fix(currency));
    // Anything else: give up.
    s.insert("*".into(), vec![Reply::text(call("submit", &[]))]);
    s
}
