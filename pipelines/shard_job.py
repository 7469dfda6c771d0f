"""One shard, start to finish: the unit of work for every runner.

Three stages run at once, so the segmenter (the accelerator) is fed continuously:

* a reader thread reads and decodes the next batch of images (``prepare``);
* the calling thread runs the segmenter on one batch after another (``segment_prepared``);
* ``cpu_workers`` CPU workers annotate each image and pack its members (``finish``): for 1, one
  thread (the segmenter releases the GIL while it waits on the device); for k >= 2, k worker
  processes (:class:`CpuPool`), since annotation is mostly GIL-holding Python and numpy.

Results are collected in record order and ``finish`` is a pure function of its inputs, so the
shard's bytes do not depend on the number of workers. Memory is bounded: at most
``2 * cpu_workers + 1`` batches of images are in flight.
"""
from __future__ import annotations

import multiprocessing
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from getok_data.sample import Prepared, SampleResult, finish, prepare, segment_prepared
from getok_data.config import BuildConfig
from getok_data.dataset import tar_bytes, write_shard
from getok_data.storage import Storage
from getok_data.types import ErrorRecord, ImageRecord, PlannedImage

SEGMENT_BATCH = 4  # images per segmenter call: the SAM encoder batch (encoder_batch_size), and the
# most CPU work left to drain after a shard's last segmenter call


Resolve = Callable[[PlannedImage], ImageRecord]


def resolved(item: ImageRecord | PlannedImage, resolve: Resolve | None) -> ImageRecord:
    """The record of a planned image; a resolve that raises (a bug, a broken file system) costs
    that image only: it is quarantined with the reason, like any bad input."""
    if isinstance(item, ImageRecord):
        return item
    try:
        return resolve(item)
    except Exception as e:  # noqa: BLE001 - one image, never the shard
        reason = f"resolve failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
        return ImageRecord(source=item.source, split=item.split, image_id=item.image_id, width=0, height=0,
                           targets=[], errors=[ErrorRecord(item.source, item.split, item.image_id, reason)])


def _prepare_all(records: list, resolve: Resolve | None = None) -> list[Prepared]:
    return [prepare(resolved(r, resolve)) for r in records]


def _finish_all(jobs: list[tuple[Prepared, object]], cfg: BuildConfig, identity: dict) -> list[SampleResult]:
    return [finish(p, table, cfg, identity) for p, table in jobs]


def _slim(p: Prepared) -> Prepared:
    """What ``finish`` needs of a prepared image, without the decoded pixels (cheap to send)."""
    return Prepared(p.record, p.data, True if p.rgb is not None else None, p.ext, p.errors)


class CpuPool:
    """The CPU workers of one runner or actor, kept across shards (processes start once).

    ``workers == 1``: one thread; ``workers >= 2``: that many ``spawn`` processes (no fork of a
    process that holds CUDA or Ray state).
    """

    def __init__(self, workers: int = 1) -> None:
        workers = int(workers)
        if workers < 1:
            raise ValueError(f"build.cpu_workers must be >= 1, got {workers}")
        self.workers = workers
        self.processes = workers >= 2
        self._pool: Executor | None = None

    @property
    def executor(self) -> Executor:
        if self._pool is None:
            if self.processes:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            else:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="getok-cpu")
        return self._pool

    def submit(self, jobs: list[tuple[Prepared, object]], cfg: BuildConfig, identity: dict) -> Future:
        """Queue ``finish`` for ``jobs``. A pool whose process died (OOM, kill) failed the shard
        that was running; it is replaced here, so the runner's retry finds a working pool."""
        if self.processes:
            jobs = [(_slim(p), t) for p, t in jobs]
        try:
            return self.executor.submit(_finish_all, jobs, cfg, identity)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            return self.executor.submit(_finish_all, jobs, cfg, identity)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "CpuPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_shard(index: int, records: list[ImageRecord | PlannedImage], segmenter, cfg: BuildConfig,
                config_hash: str, out: str, on_image=None, pool: CpuPool | None = None,
                resolve: Resolve | None = None) -> dict:
    """Process ``records`` (one fixed block of the sorted plan) and write shard ``index``.

    Returns the sidecar. ``on_image(result)`` is called after each image (progress bars), in
    record order. ``pool``: the CPU workers to use (default: a pool of ``build.cpu_workers``
    made for this call; runners pass theirs so worker processes start once). ``resolve``: the
    source's, for planned images (default: the configured source's, made here); the reader
    thread resolves each image just before reading it.
    """
    if pool is None:
        with CpuPool(cfg.build.cpu_workers) as own:
            return build_shard(index, records, segmenter, cfg, config_hash, out, on_image, own, resolve)
    if resolve is None and any(isinstance(r, PlannedImage) for r in records):
        from .plan import make_source

        resolve = make_source(cfg).resolve
    t0 = time.perf_counter()
    n, offset_m = cfg.grid.n, cfg.offset_m
    results: list[SampleResult] = []
    batches = [records[b : b + SEGMENT_BATCH] for b in range(0, len(records), SEGMENT_BATCH)]
    in_flight: deque[Future] = deque()
    # One CPU job per image, submitted as soon as its batch is segmented; at most two batches'
    # worth of images per worker wait uncollected, so memory stays bounded.
    depth = 2 * pool.workers * SEGMENT_BATCH

    def collect(limit: int) -> None:
        while len(in_flight) > limit:
            for res in in_flight.popleft().result():
                results.append(res)
                if on_image:
                    on_image(res)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="getok-read") as reader:
        ahead = reader.submit(_prepare_all, batches[0], resolve) if batches else None
        try:
            for k in range(len(batches)):
                prepared = ahead.result()
                if k + 1 < len(batches):
                    ahead = reader.submit(_prepare_all, batches[k + 1], resolve)
                tables = segment_prepared(prepared, segmenter, n, offset_m)
                for job in zip(prepared, tables):
                    in_flight.append(pool.submit([job], cfg, segmenter.identity))
                collect(depth)
            collect(0)
        finally:
            for f in in_flight:
                f.cancel()
    data = tar_bytes((r.key, r.members) for r in results if r.members is not None)
    ok = [r for r in results if r.members is not None]
    sidecar = {
        "index": index,
        "config_hash": config_hash,
        "keys": [r.key for r in results],
        "images": len(results),
        "images_written": len(ok),
        "targets_seen": sum(r.targets_seen for r in results),
        "targets": sum(len(r.targets) for r in results),
        "targets_seg_null": sum(not t["seg"] for r in results for t in r.targets),
        # no-target queries (empty <seg></seg>, IoU 1 by definition) are counted apart, not averaged in
        "token_counts": [t["token_count"] for r in results for t in r.targets if t["seg"] and not t.get("no_target")],
        "token_ious": [t["token_iou"] for r in results for t in r.targets if not t.get("no_target")],
        "targets_no_target": sum(bool(t.get("no_target")) for r in results for t in r.targets),
        "targets_low_quality": sum(bool(t.get("low_quality")) for r in results for t in r.targets),
        "regions": {c: sum(r.regions.get(c, 0) for r in results) for c in "IRHF"},
        "image_bytes": sum(len(next(iter(v for k, v in r.members.items() if k not in ("json", "cand.npz"))))
                           for r in ok),
        "errors": [e.to_dict() for r in results for e in r.errors],
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return write_shard(Storage(out), index, data, sidecar)
