//! `swestar render`: the SLURM job script of a stage, exactly as the SLURM
//! executor would submit it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::inspect::find_nodes;
use super::{build_plan, load, store_dir, Exit};
use crate::dag::Decision;
use crate::exec::prepare::{prepare, shard_count};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The workflow file (TOML).
    workflow: PathBuf,
    /// The stage, by its name under [stages].
    stage: String,
    /// Render for shard I of N: the script then runs that shard when run by
    /// hand outside SLURM (`bash script`).
    #[arg(long, value_name = "I/N", value_parser = crate::exec::job::parse_shard)]
    shard: Option<(u32, u32)>,
    /// Which sweep variant (repeatable: one script after another, each
    /// under a `# ---` line naming its variants).
    #[arg(long = "variant", value_name = "NAME")]
    variants: Vec<String>,
    /// Override a value of the workflow: a dotted TOML path (stages.NAME.params.KEY=VALUE), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

/// Where the key of a stage that cannot be keyed yet goes.
const PENDING_KEY: &str = "KEY-PENDING";

pub fn render(store_flag: Option<&Path>, args: RenderArgs) -> Result<ExitCode, Exit> {
    let loaded = load(&args.workflow, &args.sets)?;
    let dir = store_dir(store_flag, Some(&loaded));
    let store = Store::existing(&dir);
    let plan = build_plan(&loaded, store.as_ref())?;
    let nodes = find_nodes(&plan, &args.workflow, &args.stage, &args.variants, !args.variants.is_empty())?;
    let several = nodes.len() > 1;
    for node in nodes {
        if several {
            let named: Vec<&str> =
                node.variants.iter().filter(|v| args.variants.contains(v)).map(String::as_str).collect();
            println!("# --- swestar render: stage {}, variants {}", node.stage, named.join(" | "));
        }
        print!("{}", render_node(&args, &loaded, &plan, node, store.as_ref(), &dir)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The job script of one node.
fn render_node(
    args: &RenderArgs,
    loaded: &super::Loaded,
    plan: &crate::dag::Plan,
    node: &crate::dag::Node,
    store: Option<&Store>,
    dir: &Path,
) -> Result<String, Exit> {
    // Below a stage that has not run, the key (which names the staging
    // directory) is not known yet: a stand-in renders the script, and the
    // printed script says where the key goes.
    let (key, pending) = match &node.decision {
        Decision::Cached { key, .. } | Decision::Run { key: Some(key), .. } => (key.clone(), None),
        Decision::Run { key: None, .. } => {
            let stand_in = crate::cache::hash_str(&format!("the pending key of {}", node.stage));
            let key = crate::cache::CacheKey::parse(&stand_in).expect("a blake3 hash is a key");
            let why = match &node.decision {
                Decision::Run { reasons, .. } if !node.runnable => {
                    let lines: Vec<String> = reasons.iter().map(|r| format!("\n  {r}")).collect();
                    format!("`{}` cannot run on this machine yet:{}\n  and", node.stage, lines.concat())
                }
                _ => {
                    let first: Vec<&str> = node
                        .upstream
                        .iter()
                        .filter(|e| matches!(plan.nodes[e.node].decision, Decision::Run { .. }))
                        .map(|e| e.stage.as_str())
                        .collect();
                    format!("the key of `{}` is known once {} ran, so", node.stage, first.join(", "))
                }
            };
            (key, Some(why))
        }
    };
    let root = match &store {
        Some(s) => s.root.clone(),
        None => std::path::absolute(dir).map_err(|e| Exit::failed(format!("error: {}: {e}", dir.display())))?,
    };
    let count = shard_count(node);
    if let Some((_, n)) = args.shard {
        if n != count {
            return Err(Exit::invalid(format!("error: --shard I/{n}: stage `{}` has {count} shards", node.stage)));
        }
    }
    // Upstream artifacts as the run will find them: the key is known, so
    // every upstream stage is in the store.
    let shown = store.cloned().unwrap_or(Store { root: root.clone() });
    let upstream = |u: usize| match (&plan.nodes[u].decision, &store) {
        (Decision::Cached { key, .. }, Some(store)) => match store.lookup(key) {
            crate::store::Lookup::Present(m) => Some(store.part_paths(&m)),
            _ => None,
        },
        _ => None,
    };
    let index = plan.nodes.iter().position(|n| std::ptr::eq(n, node)).unwrap_or(0);
    let mut prepared =
        prepare(index, node, &key, &shown, &upstream, (0..count).collect(), root.join("logs"), String::new());
    // A model an upstream stage trained is shown by its checkpoint when
    // that is in the store; otherwise as the workflow names it.
    if store.is_some() && prepared.resolve_serve(node).is_err() {
        prepared.launch.serve = node.spec.kind.serve().cloned();
    }
    let exe = std::env::current_exe().map_err(|e| Exit::failed(format!("error: cannot find own binary: {e}")))?;
    let slurm = &loaded.variants[0].slurm;
    let exe = slurm.swestar.as_ref().map(PathBuf::from).unwrap_or(exe);
    let mut script = prepared.launch.script(slurm, &exe).map_err(|e| Exit::invalid(format!("error: {e}")))?;
    if let Some((i, _)) = args.shard {
        script = script.replace("${SLURM_ARRAY_TASK_ID:-0}", &format!("${{SLURM_ARRAY_TASK_ID:-{i}}}"));
    }
    if let Some(why) = pending {
        script = script.replace(key.as_str(), PENDING_KEY).replace(key.short(), PENDING_KEY);
        eprintln!("note: {why} {PENDING_KEY} stands for its key in the script");
    }
    Ok(script)
}
