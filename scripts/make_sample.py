"""Build a bundled sample: 8 users x 2 queries from the dev split of a data set (git-commits by default).

Users are the first 8 dev users in file order; each keeps its first 2 queries, and
each profile keeps its 20 newest items (the data stores them newest last).

    python scripts/make_sample.py ../shared/data/git-commits src/ttpkit/_sample/git-commits
    python scripts/make_sample.py ../shared/data/debian-description src/ttpkit/_sample/debian-description 4 2 10
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path


def main(src: str, dst: str, users: int = 8, per_user: int = 2, profile: int = 20) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    questions = json.load(gzip.open(src_dir / "dev_questions.json.gz", "rt"))
    outputs = json.load(gzip.open(src_dir / "dev_outputs.json.gz", "rt"))
    kept: dict[str, list[dict]] = {}
    for q in questions:
        uid = q["user_id"]
        if uid not in kept and len(kept) == users:
            continue
        bucket = kept.setdefault(uid, [])
        if len(bucket) < per_user:
            bucket.append({**q, "profile": q["profile"][-profile:]})
    sample = [q for qs in kept.values() for q in qs]
    ids = {q["id"] for q in sample}
    golds = [g for g in outputs["golds"] if g["id"] in ids]
    dst_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(dst_dir / "dev_questions.json.gz", "wt", encoding="utf-8") as f:
        json.dump(sample, f, ensure_ascii=False)
    with gzip.open(dst_dir / "dev_outputs.json.gz", "wt", encoding="utf-8") as f:
        json.dump({"task": outputs["task"], "golds": golds}, f, ensure_ascii=False)
    print(f"{len(kept)} users, {len(sample)} queries -> {dst_dir}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(x) for x in sys.argv[3:6]))  # [users per_user profile]
