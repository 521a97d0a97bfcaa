//! `swestar render`: the SLURM job script of a stage, exactly as the SLURM
//! executor would submit it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::inspect::find_node;
use super::{build_plan, load, store_dir, Exit};
use crate::dag::Decision;
use crate::exec::run::shard_count;
use crate::exec::slurm::SlurmBackend;
use crate::exec::Launch;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RenderArgs {
    workflow: PathBuf,
    stage: String,
    /// Render for shard I of N: the script then runs that shard when run by
    /// hand outside SLURM (`bash script`).
    #[arg(long, value_name = "I/N", value_parser = crate::exec::job::parse_shard)]
    shard: Option<(u32, u32)>,
    #[arg(long)]
    variant: Option<String>,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn render(store_flag: Option<&Path>, args: RenderArgs) -> Result<ExitCode, Exit> {
    let loaded = load(&args.workflow, &args.sets)?;
    let dir = store_dir(store_flag, Some(&loaded));
    let store = Store::existing(&dir);
    let plan = build_plan(&loaded, store.as_ref())?;
    let node = find_node(&plan, &args.workflow, &args.stage, args.variant.as_deref())?;
    let key = match &node.decision {
        Decision::Cached { key, .. } | Decision::Run { key: Some(key), .. } => key.clone(),
        Decision::Run { key: None, reasons } => {
            return Err(Exit::failed(format!(
                "error: the job script names the stage's staging directory by its key, which is not known yet ({})",
                reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ")
            )))
        }
    };
    let root = match &store {
        Some(s) => s.root.clone(),
        None => std::path::absolute(&dir).map_err(|e| Exit::failed(format!("error: {}: {e}", dir.display())))?,
    };
    let staging = Store { root: root.clone() }.staging_dir(&key);
    let count = shard_count(node);
    if let Some((_, n)) = args.shard {
        if n != count {
            return Err(Exit::invalid(format!("error: --shard I/{n}: stage `{}` has {count} shards", node.stage)));
        }
    }
    let mut launch = Launch::for_node(
        0,
        node,
        &key,
        staging.join("job.json"),
        (0..count).collect(),
        root.join("logs"),
        String::new(),
    );
    // A served model that an upstream stage trained: its checkpoint, as the
    // run will resolve it (the upstream artifact exists, or the key would
    // not be known).
    if let Some(store) = &store {
        let upstream = |u: usize| match &plan.nodes[u].decision {
            Decision::Cached { key, .. } => match store.lookup(key) {
                crate::store::Lookup::Present(m) => Some(store.part_paths(&m)),
                _ => None,
            },
            _ => None,
        };
        let job = crate::exec::run::build_job(node, &upstream, store, &key);
        if let Ok(Some(serve)) = crate::exec::run::served_model(node, &job) {
            launch.serve = Some(serve);
        }
    }
    let exe = std::env::current_exe().map_err(|e| Exit::failed(format!("error: cannot find own binary: {e}")))?;
    let slurm = &loaded.variants[0].slurm;
    let exe = slurm.swestar.as_ref().map(PathBuf::from).unwrap_or(exe);
    let mut script = SlurmBackend::script(&launch, slurm, &exe).map_err(|e| Exit::invalid(format!("error: {e}")))?;
    if let Some((i, _)) = args.shard {
        script = script.replace("${SLURM_ARRAY_TASK_ID:-0}", &format!("${{SLURM_ARRAY_TASK_ID:-{i}}}"));
    }
    print!("{script}");
    Ok(ExitCode::SUCCESS)
}
