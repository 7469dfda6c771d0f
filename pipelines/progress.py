"""One progress bar for every runner: images/s, targets, errors, shards."""
from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, enabled: bool = True, total: int | None = None):
        self.bar = tqdm(total=total, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                        desc="build")
        self.targets = self.errors = self.shards = self.skipped = 0

    def _post(self) -> None:
        self.bar.set_postfix(targets=self.targets, errors=self.errors, shards=self.shards,
                             resumed=self.skipped, refresh=False)

    def image(self, result) -> None:
        """After one image (local runner)."""
        self.targets += len(result.targets)
        self.errors += len(result.errors)
        self.bar.update(1)
        self._post()

    def shard(self, sidecar: dict, images_counted: bool = True) -> None:
        self.shards += 1
        if not images_counted:  # remote runners report per shard
            self.bar.update(sidecar["images"])
            self.targets += sidecar["targets"]
            self.errors += len(sidecar["errors"])
        self._post()

    def skip(self, sidecar: dict) -> None:
        """A shard already complete from an earlier run."""
        self.skipped += 1
        self.shards += 1
        self.bar.update(sidecar["images"])
        self.targets += sidecar["targets"]
        self.errors += len(sidecar["errors"])
        self._post()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
