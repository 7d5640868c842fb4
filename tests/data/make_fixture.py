"""Copy one checkpoint of a training run into a test fixture: the policy bundle only
(``policy/``, ``meta/``; ``load_policy`` needs nothing else), with the run's own
directory replaced by a relative name in every file, and fresh checksums.

    python -m tests.data.make_fixture RUN_DIR STEP tests/data/NAME
"""
from __future__ import annotations

import os
import shutil
import sys

from jaxrl_lite.run import checkpoint

KEEP = ("_CHECKPOINT_METADATA", "commit_success.txt", "meta", "policy")


def make(run_dir: str, step: int, dest: str) -> None:
    run_dir = os.path.abspath(run_dir)
    src = os.path.join(checkpoint.checkpoint_dir(run_dir), str(step))
    out = os.path.join(dest, checkpoint.CHECKPOINT_SUBDIR, str(step))
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(out)
    shutil.copy(os.path.join(run_dir, "config.json"), dest)
    for name in KEEP:
        (shutil.copytree if os.path.isdir(os.path.join(src, name)) else shutil.copy)(
            os.path.join(src, name), os.path.join(out, name))
    relative = os.path.join("runs", os.path.basename(run_dir)).encode()
    for root, _, files in os.walk(dest):
        for f in files:
            path = os.path.join(root, f)
            data = open(path, "rb").read()
            if run_dir.encode() in data:
                with open(path, "wb") as fh:
                    fh.write(data.replace(run_dir.encode(), relative))
    checkpoint.write_manifest(out)
    checkpoint.load_policy(dest)  # verifies the checksums and the actor's shapes


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    make(sys.argv[1], int(sys.argv[2]), sys.argv[3])
