"""Drives mini-swe-agent (pip package mini-swe-agent) through the same kind
of episodes as `cargo bench --bench agent`, against the same scripted server,
and prints CPU seconds (process and children) and wall seconds as JSON.

    python mini_driver.py URL REPO EPISODES
"""

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from minisweagent.agents.default import DefaultAgent
from minisweagent.environments.local import LocalEnvironment
from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel

url, repo, episodes = sys.argv[1], sys.argv[2], int(sys.argv[3])
config_dir = Path(__import__("minisweagent").__file__).parent / "config"
agent_cfg = yaml.safe_load((config_dir / "mini_textbased.yaml").read_text())["agent"]
agent_cfg.update(step_limit=1000, cost_limit=0)


def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def episode(i):
    model = LitellmTextbasedModel(
        model_name="openai/bench",
        model_kwargs={"api_base": url, "api_key": "none"},
        cost_tracking="ignore_errors",
    )
    agent = DefaultAgent(model, LocalEnvironment(cwd=repo), **agent_cfg)
    agent.run(f"episode {i}")
    return agent.n_calls


cpu0, t0 = cpu(), time.time()
with ThreadPoolExecutor(max_workers=episodes) as pool:
    turns = sum(pool.map(episode, range(episodes)))
wall, used = time.time() - t0, cpu() - cpu0
print(json.dumps({"episodes": episodes, "turns": turns, "wall_s": wall, "cpu_s": used,
                  "cpu_ms_per_turn": used * 1e3 / turns, "turns_per_s": turns / wall}))
