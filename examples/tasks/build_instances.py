"""Builds examples/tasks/instances.jsonl from repo/ and bugs.py.

The clean project becomes a git repository with a fixed author and date, so
its commit hash (base_commit) is the same on every machine. For each bug the
script applies the edit, takes the diff (the instance's `patch`), and runs
pytest on the buggy and the clean tree: FAIL_TO_PASS are the tests that fail
with the bug and pass without it, PASS_TO_PASS those that pass in both.

    python3 build_instances.py [--check]     (--check: compare, write nothing)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bugs import BUGS  # noqa: E402

GIT_ENV = {
    "GIT_AUTHOR_NAME": "swestar",
    "GIT_AUTHOR_EMAIL": "tasks@swestar.invalid",
    "GIT_COMMITTER_NAME": "swestar",
    "GIT_COMMITTER_EMAIL": "tasks@swestar.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
}


def git(repo, *args):
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", "-C", repo, *args], env=env, check=True, capture_output=True, text=True).stdout


def make_repo(dest):
    """Copies repo/ to dest as a one-commit git repository; returns the commit."""
    shutil.copytree(os.path.join(HERE, "repo"), dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "ledger 0.1.0")
    return git(dest, "rev-parse", "HEAD").strip()


def test_results(repo):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "-q"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout
    results = {}
    for line in out.splitlines():
        m = re.match(r"^(PASSED|FAILED|ERROR) (\S+)", line)
        if m:
            results[m.group(2)] = m.group(1)
    return results


def build():
    instances = []
    with tempfile.TemporaryDirectory() as tmp:
        clean = os.path.join(tmp, "clean")
        base = make_repo(clean)
        clean_results = test_results(clean)
        assert clean_results and all(v == "PASSED" for v in clean_results.values()), clean_results
        for bug in BUGS:
            work = os.path.join(tmp, bug["name"])
            shutil.copytree(clean, work)
            path = os.path.join(work, bug["file"])
            with open(path) as f:
                text = f.read()
            assert text.count(bug["old"]) == 1, f"{bug['name']}: the edit must match exactly once"
            with open(path, "w") as f:
                f.write(text.replace(bug["old"], bug["new"]))
            patch = git(work, "diff")
            buggy = test_results(work)
            f2p = sorted(t for t, r in buggy.items() if r != "PASSED" and clean_results.get(t) == "PASSED")
            p2p = sorted(t for t, r in buggy.items() if r == "PASSED" and clean_results.get(t) == "PASSED")
            assert f2p, f"{bug['name']}: no test fails with the bug"
            instances.append(
                {
                    "instance_id": f"swestar__ledger.{base[:8]}.{bug['name']}",
                    "repo": "swestar/ledger",
                    "base_commit": base,
                    "patch": patch,
                    "test_patch": "",
                    "problem_statement": bug["problem_statement"],
                    "FAIL_TO_PASS": f2p,
                    "PASS_TO_PASS": p2p,
                    "image_name": "localhost/swestar-ledger:latest",
                }
            )
    return instances


def main():
    instances = build()
    text = "".join(json.dumps(i, sort_keys=True) + "\n" for i in instances)
    target = os.path.join(HERE, "instances.jsonl")
    if "--check" in sys.argv:
        with open(target) as f:
            if f.read() != text:
                sys.exit("instances.jsonl is stale: run python3 examples/tasks/build_instances.py")
        print(f"instances.jsonl is current ({len(instances)} instances)")
        return
    with open(target, "w") as f:
        f.write(text)
    print(f"wrote {len(instances)} instances to {target}")


if __name__ == "__main__":
    main()
