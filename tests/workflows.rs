//! The shipped experiment workflows plan and render as intended: the
//! reference SWE-Star run (workflows/swe-star.toml) and its scaling
//! ablation (workflows/scaling-ablation.toml), with the cluster's data and
//! model paths pointed at the example tasks and the real Qwen tokenizer.

mod common;

use std::collections::{HashMap, HashSet};

use common::{tokenizer, Ctx, TASKS};

fn sets(tok: &str, ctx: &Ctx) -> Vec<String> {
    let demos = ctx.write("demos.jsonl", "{\"problem_statement\": \"Example issue.\"}\n");
    let demos = demos.display();
    [
        format!("data.swesmith.path=\"{TASKS}/instances.jsonl\""),
        format!("data.verified.path=\"{TASKS}/instances.jsonl\""),
        format!("models.teacher.tokenizer=\"{tok}\""),
        format!("models.student.tokenizer=\"{tok}\""),
        format!("stages.segment.tokenizer=\"{tok}\""),
        format!("data.demonstrations.path=\"{demos}\""),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

#[test]
fn the_swe_star_workflow_plans_and_renders_the_reference_run() {
    let Some(tok) = tokenizer() else { return };
    let ctx = Ctx::new();
    let wf = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/swe-star.toml");
    let args = sets(&tok, &ctx);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let plan = ctx.plan_json(wf, &refs);
    let stages: Vec<&str> = plan.as_array().unwrap().iter().map(|p| p["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["synthesize", "rollout", "filter", "segment", "sft", "eval"]);
    // (The array itself, `--array=0-N%P`, is on sbatch's command line.)
    // A job script names its stage's key, known once the inputs exist:
    // the first stage's, and the others' with their inputs pointed at data.
    let render = |stage: &str, extra: &[&str]| {
        let mut a = vec!["render", wf, stage];
        a.extend(&refs);
        a.extend(extra);
        let r = ctx.swestar(&a);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    let synth = render("synthesize", &[]);
    for needle in
        ["of 50", "sglang.launch_server", "--model-path /models/teacher", "--tp 4", "#SBATCH --gpus-per-node=4"]
    {
        assert!(synth.contains(needle), "{needle}\n{synth}");
    }
    let rollout = render("rollout", &["--set", "stages.rollout.inputs.instances=\"data.swesmith\""]);
    assert!(rollout.contains("of 200") && rollout.contains("sglang.launch_server"), "{rollout}");
    let sft = render("sft", &["--set", "stages.sft.inputs.samples=\"data.swesmith\""]);
    for needle in ["#SBATCH --nodes=4", "tune run --nnodes 4 --nproc_per_node 4", "full_finetune_distributed"] {
        assert!(sft.contains(needle), "{needle}\n{sft}");
    }
}

#[test]
fn the_scaling_ablation_shares_every_upstream_artifact() {
    let Some(tok) = tokenizer() else { return };
    let ctx = Ctx::new();
    let wf = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/scaling-ablation.toml");
    let args = sets(&tok, &ctx);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // The plan has one node per distinct stage instance, with the
    // variants it serves.
    let plan = ctx.plan_json(wf, &refs);
    let mut nodes: HashMap<String, usize> = HashMap::new();
    let mut variants = HashSet::new();
    for p in plan.as_array().unwrap() {
        *nodes.entry(p["stage"].as_str().unwrap().into()).or_default() += 1;
        for v in p["variants"].as_array().unwrap() {
            variants.insert(v.as_str().unwrap().to_string());
        }
        if p["stage"] == "synthesize" {
            assert_eq!(p["variants"].as_array().unwrap().len(), 24, "shared by every variant");
        }
    }
    assert_eq!(variants.len(), 24, "8 trajectory counts × 3 sizes");
    for shared in ["synthesize", "rollout", "filter"] {
        assert_eq!(nodes[shared], 1, "{shared} runs once for all variants");
    }
    assert_eq!(nodes["segment"], 8, "one per trajectory count");
    assert_eq!(nodes["sft"], 24);
    assert_eq!(nodes["eval"], 24);
}
