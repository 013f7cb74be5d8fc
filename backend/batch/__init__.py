"""Batch reconstruction: ``headrecon batch INPUT... -o OUT_DIR`` (docs/BATCH.md).

inputs.py     which photos (files, folders, .txt/.csv lists) and their unique bundle names
manifest.py   OUT_DIR/manifest.jsonl lines, bundle completeness (--resume)
worker.py     PhotoWorker: a warm engine turning photo tasks into manifest lines
local.py      local mode: N worker processes, retries when a worker dies mid-photo
ray_cluster.py Ray mode: the same worker as Ray actors (optional dependency)
progress.py   the progress bar on stderr
runner.py     run_batch() and the CLI entry batch_main()
"""

from .runner import BatchSummary, batch_main, run_batch

__all__ = ["BatchSummary", "batch_main", "run_batch"]
