"""Run under ``torch.distributed.run`` by test_train_shards: MAE training from shards that records, per rank, the
sample ids of every micro-batch (``IDS_DIR/rank{r}.jsonl``) and SIGKILLs itself at loss call ``KILL_AT`` (rank 0)."""
from __future__ import annotations

import json
import os
import signal
import sys

from internvideo.train import train
from internvideo.train.config import load_config
from internvideo.train.objectives import MaskedVideoObjective


class Recording(MaskedVideoObjective):
    calls = 0

    def loss(self, model, batch):
        rank = int(os.environ.get("RANK", "0"))
        Recording.calls += 1
        with open(os.path.join(os.environ["IDS_DIR"], f"rank{rank}.jsonl"), "a") as f:
            f.write(json.dumps(batch["index"].tolist()) + "\n")
        if rank == 0 and Recording.calls == int(os.environ.get("KILL_AT", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(model, batch)


if __name__ == "__main__":
    cfg = load_config(None, sys.argv[1:])
    train(cfg, Recording(cfg))
