"""A real stemscribe worker process around FakePipeline, for kill / SIGTERM / restart tests.

Run: python tests/helpers/worker_proc.py [--burst]. Settings come from STEMSCRIBE_*
like `stemscribe worker`; FAKE_PIPELINE_SECONDS sets how long each job takes and
FAKE_PIPELINE_PAGES how many pages its pretend score has (1 by default).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_fakes import FakePipeline  # noqa: E402

from stemscribe.settings import load_settings  # noqa: E402
from stemscribe.worker.main import run_worker  # noqa: E402

if __name__ == "__main__":
    pipeline = FakePipeline(float(os.environ.get("FAKE_PIPELINE_SECONDS", "0.2")),
                            pages=int(os.environ.get("FAKE_PIPELINE_PAGES", "1")))
    sys.exit(run_worker(load_settings(), burst="--burst" in sys.argv[1:], pipeline=pipeline))
