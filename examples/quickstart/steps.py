"""Steps of the quickstart workflow: plain Python, standard library only.

Each step reads JSON Lines and writes JSON Lines; swestar stores the output
as Parquet (the stages use `format = "jsonl"`).
"""
import json
import re
import sys
from collections import defaultdict


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def clean(src, dst, max_chars):
    rows = []
    for r in read(src):
        text = re.sub(r"```.*?```", " ", r["problem_statement"], flags=re.S)
        text = " ".join(text.split())[: int(max_chars)]
        rows.append({"instance_id": r["instance_id"], "repo": r["repo"], "text": text})
    write(dst, rows)


def tokens(src, dst):
    rows = []
    for r in read(src):
        words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\S", r["text"])
        rows.append({"instance_id": r["instance_id"], "repo": r["repo"], "tokens": len(words)})
    write(dst, rows)


def keep_short(src, dst, max_tokens):
    write(dst, [r for r in read(src) if r["tokens"] <= int(max_tokens)])


def by_repo(src, dst):
    groups = defaultdict(list)
    for r in read(src):
        groups[r["repo"]].append(r["tokens"])
    write(dst, [
        {"repo": repo, "issues": len(t), "mean_tokens": round(sum(t) / len(t), 2)}
        for repo, t in sorted(groups.items())
    ])


def report(kept, repos, dst):
    kept, repos = read(kept), read(repos)
    total = sum(r["issues"] for r in repos)
    write(dst, [{"issues": total, "kept": len(kept), "kept_fraction": round(len(kept) / max(total, 1), 3)}])


if __name__ == "__main__":
    step, args = sys.argv[1], sys.argv[2:]
    {"clean": clean, "tokens": tokens, "keep_short": keep_short, "by_repo": by_repo, "report": report}[step](*args)
