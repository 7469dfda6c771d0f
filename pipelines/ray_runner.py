"""Ray runner: actors that each hold one segmenter (on their GPU), a shard per task.

- Each actor builds its segmenter once (``num_gpus`` per actor, fractional allowed; 0 on CPU
  clusters) and runs :func:`pipelines.shard_job.build_shard`, the same code as the local runner,
  so outputs are byte-identical whatever ran them.
- Each actor has two shards in flight (one running, one queued), so it never waits on the driver.
- A dead actor (node loss, OOM, ``kill -9``) is restarted by Ray (``max_restarts``); the driver
  re-submits its shard to a live actor. A shard that exceeds ``shard_timeout_s`` has its actor
  killed and is retried the same way. A shard fails the job only after ``max_retries``.
- Bad input never reaches this level: ``build_shard`` quarantines it per image.
- All progress lives in the output folder (sidecars), so a fresh cluster (a KubeRay retry) resumes.
"""
from __future__ import annotations

import os
import time
from collections import deque

import ray

from getok_data.config import BuildConfig, BuildOptions, PluginConfig
from getok_data.dataset import shard_is_complete
from getok_data.segmenters import build_segmenter
from getok_data.storage import Storage

from getok_data.location import ENV as STORAGE_ENV

from .output import BuildError
from .plan import make_source, plan
from .progress import Progress
from .shard_job import CpuPool, build_shard

QUEUE_DEPTH = 2  # shards in flight per actor
RESTART_WAIT_S = 1.0  # how long a restarting actor rests before it is given work again
MAX_UNAVAILABLE = 300  # consecutive "actor unavailable" answers before the job gives up (~5 min)


class ShardWorker:
    """Holds one segmenter; builds whole shards."""

    def __init__(self, segmenter_cfg: PluginConfig, cpu_workers: int = 1):
        self.segmenter = build_segmenter(segmenter_cfg)
        self.pool = CpuPool(cpu_workers)  # kept for the actor's life: worker processes start once
        self.source = None  # made on the first shard: it resolves planned images here, on this node

    def pid(self) -> int:
        return os.getpid()

    def build(self, index: int, records: list, cfg: BuildConfig, chash: str, out: str) -> dict:
        if self.source is None:
            self.source = make_source(cfg)
        return build_shard(index, records, self.segmenter, cfg, chash, out, pool=self.pool, resolve=self.source.resolve)


def _connect(address: str | None) -> None:
    if ray.is_initialized():
        return
    env_vars = {"PYTHONHASHSEED": "0"}
    if os.environ.get(STORAGE_ENV):  # --storage-options reach the actors that read the inputs
        env_vars[STORAGE_ENV] = os.environ[STORAGE_ENV]
    env = {"env_vars": env_vars}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(runtime_env=env, log_to_driver=False, include_dashboard=False)


def actor_cpus(bcfg: BuildOptions) -> float:
    """CPUs each actor reserves: ``cpus_per_actor``, and at least one per CPU worker
    (``build.cpu_workers``), so Ray never packs more annotation work on a node than it has cores."""
    return max(bcfg.cpus_per_actor, float(bcfg.cpu_workers))


def _num_actors(bcfg: BuildOptions) -> int:
    if bcfg.num_actors:
        return bcfg.num_actors
    res = ray.cluster_resources()
    gpus = bcfg.gpus_per_actor
    by_cpu = int(res.get("CPU", 1) // actor_cpus(bcfg))
    by_gpu = int(res.get("GPU", 0) // gpus) if gpus > 0 else by_cpu
    return max(1, min(by_cpu, by_gpu))


def run_ray(cfg: BuildConfig, chash: str, storage: Storage, progress: bool = True) -> tuple[list[dict], int]:
    bcfg = cfg.build
    _connect(bcfg.address)
    actor_cls = ray.remote(
        num_cpus=actor_cpus(bcfg), num_gpus=bcfg.gpus_per_actor,
        max_restarts=-1, max_task_retries=0,
    )(ShardWorker)
    actors = [actor_cls.remote(cfg.segmenter, bcfg.cpu_workers) for _ in range(_num_actors(bcfg))]
    # Two shards in flight per actor: one running, one queued at the actor, so an actor never
    # waits while the driver reads (or, for synthetic data, renders) its next shard.
    free = deque(k for _ in range(QUEUE_DEPTH) for k in range(len(actors)))
    queues: list[deque] = [deque() for _ in actors]  # each actor's refs in submission order
    timeout = bcfg.shard_timeout_s
    max_retries = bcfg.max_retries

    sidecars: dict[int, dict] = {}
    pending = plan(make_source(cfg), bcfg.images_per_shard)
    retry: deque = deque()  # (index, records) to run again
    attempts: dict[int, int] = {}
    running: dict = {}  # ref -> (index, records, actor number)
    since = [0.0] * len(actors)  # when the head of each actor's queue began running
    resting: dict[int, float] = {}  # actor number -> when it may take work again (restarting)
    unavailable = [0] * len(actors)
    num_shards = 0
    exhausted = False

    with Progress(enabled=progress) as bar:
        while True:
            now = time.monotonic()
            for k in [k for k, t in resting.items() if t <= now]:
                del resting[k]
                free.extend([k] * (QUEUE_DEPTH - len(queues[k]) - free.count(k)))
            # Fill every free slot: retries first, then the next planned shards.
            while free and (retry or not exhausted):
                if retry:
                    index, records = retry.popleft()
                else:
                    nxt = next(pending, None)
                    if nxt is None:
                        exhausted = True
                        break
                    index, records = nxt
                    num_shards = index + 1
                    done = shard_is_complete(storage, index, chash)
                    if done is not None:
                        sidecars[index] = done
                        bar.skip(done)
                        continue
                k = free.popleft()
                ref = actors[k].build.remote(index, records, cfg, chash, storage.url)
                running[ref] = (index, records, k)
                queues[k].append(ref)
                if len(queues[k]) == 1:
                    since[k] = time.monotonic()
            if not running and not resting:
                break
            wait = min([5.0] + [max(0.05, since[k] + timeout - time.monotonic()) for k, q in enumerate(queues) if q]
                       + [max(0.05, t - time.monotonic()) for t in resting.values()])
            if not running:  # only restarting actors left: wait for them
                time.sleep(wait)
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=wait)
            for ref in ready:
                index, records, k = running.pop(ref)
                queues[k].remove(ref)
                since[k] = time.monotonic()  # the next queued shard, if any, starts now
                try:
                    sidecars[index] = ray.get(ref)
                    bar.shard(sidecars[index], images_counted=False)
                except ray.exceptions.ActorUnavailableError:
                    # The actor is restarting and the shard never ran: not the shard's fault, so it
                    # costs no attempt; the actor rests a moment before it is given work again.
                    unavailable[k] += 1
                    if unavailable[k] > MAX_UNAVAILABLE:
                        raise BuildError(f"actor {k} stayed unavailable ({MAX_UNAVAILABLE} tries); is the cluster healthy?")
                    retry.appendleft((index, records))
                    if k not in resting:
                        free = deque(x for x in free if x != k)
                    resting[k] = time.monotonic() + RESTART_WAIT_S
                    continue
                except ray.exceptions.RayActorError as e:
                    _retry(index, records, attempts, max_retries, retry, f"actor died: {type(e).__name__}")
                except ray.exceptions.RayTaskError as e:
                    _retry(index, records, attempts, max_retries, retry, f"task failed: {e}")
                unavailable[k] = 0
                if k not in resting:
                    free.append(k)  # Ray restarts a dead actor in place
            now = time.monotonic()
            for k, queue in enumerate(queues):
                if queue and now - since[k] > timeout:  # a hung worker: kill it, retry the shard
                    index, records, _ = running.pop(queue.popleft())
                    ray.kill(actors[k], no_restart=False)  # its queued shard fails and is retried too
                    _retry(index, records, attempts, max_retries, retry, f"timed out after {timeout:g}s")
                    free.append(k)
                    since[k] = now
    for a in actors:
        ray.kill(a, no_restart=True)
    return [sidecars[k] for k in sorted(sidecars)], num_shards


def _retry(index: int, records: list, attempts: dict, max_retries: int, retry: deque, why: str) -> None:
    attempts[index] = attempts.get(index, 0) + 1
    if attempts[index] > max_retries:
        raise BuildError(f"shard {index} failed {attempts[index]} times; last: {why}")
    retry.append((index, records))
