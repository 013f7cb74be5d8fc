"""Ray mode: the batch's photos as tasks of Ray actors, each holding one warm engine.

``--ray`` starts a local Ray instance (``ray.init(num_cpus=<cores>)``); ``--ray ADDRESS``
joins an existing cluster (``ray.init(address=ADDRESS)``, e.g. ``auto`` or
``ray://head:10001``). Each actor is :class:`backend.batch.worker.PhotoWorker` (the same class
as a local worker process) declared with ``num_gpus=1`` when the cluster has GPUs and the
device is not ``cpu`` (one actor per GPU unless ``--workers`` asks for more, which then share
the GPUs: ``num_gpus = GPUs / actors``), else with
``num_cpus = cluster CPUs // actors`` and as many torch threads.

Data path: **shared filesystem.** Actors read the photo from its path and write the bundle
straight into OUT_DIR through the pipeline's atomic writer; only task dicts and manifest lines
(a few hundred bytes) travel through Ray. Every node must therefore see the inputs and
OUT_DIR at the same absolute paths (NFS, Lustre, a cluster's shared home), and have this
package installed. Why not the object store: a bundle is 10-40 MB of files that belong on
disk anyway (the object store is memory, made for intermediate values between tasks); passing
them would hold every bundle in the driver's memory and write each one twice, and the
completeness rule of ``--resume`` (result.json renamed into place last) would have to be
re-implemented on the driver.

A dead actor (node lost, process killed, out of memory) fails its current photo with
``RayActorError``: the photo is queued again for another actor, a fresh actor replaces the
dead one, and after MAX_ATTEMPTS deaths the photo is recorded as ``failed``.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any, Callable

from .local import MAX_ATTEMPTS, BatchFatal, available_cores, died_record
from .manifest import STATUS_FAILED, make_record
from .worker import TEST_CRASH_ENV, PhotoWorker, remove_partial_bundle

RAY_INSTALL_HINT = ("Ray is not installed: pip install 'headrecon-backend[ray]' "
                    "(or: pip install ray==2.60.0), then run the batch again.")
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024  # only task dicts and manifest lines go through it


def ray_installed() -> bool:
    """True when ``import ray`` works."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_ray(tasks: list[dict[str, Any]], options: dict[str, Any], workers: int | None,
            address: str | None, on_record: Callable[[dict[str, Any]], None],
            tick: Callable[[], None] | None = None) -> None:
    """Reconstruct ``tasks`` with Ray actors; same contract as ``backend.batch.local.run_local``.

    Args:
        tasks: task dicts (shared-filesystem paths), ``attempt`` set to 1.
        options: ReconstructOptions as a dict.
        workers: number of actors; None = one per GPU, else one per cluster CPU.
            More actors than GPUs share the GPUs (``num_gpus = GPUs / actors``).
        address: None for a new local Ray instance, else a cluster address for ``ray.init``.
        on_record: called on the driver with each finished photo's manifest line.
        tick: called about once a second.
    Raises:
        BatchFatal: no actor could start (a missing model file gives exit code 3).
        KeyboardInterrupt: after killing the actors and removing partial bundles.
    """
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    started_here = False
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in (TEST_CRASH_ENV,) if k in os.environ}
        runtime_env = {"env_vars": env} if env else None
        if address is None:
            ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, runtime_env=runtime_env,
                     configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env,
                     configure_logging=False)
        started_here = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        use_gpu = gpus > 0 and options.get("device", "auto") != "cpu"
        if workers is not None:
            workers = min(workers, cpus)  # every actor needs a CPU: more would wait forever
        if use_gpu:
            # one actor per GPU; more actors than GPUs share them (fractional num_gpus), which
            # keeps a GPU busy while its actors run their CPU stages (MediaPipe, texture, files)
            n = workers or gpus
            actor_opts: dict[str, Any] = {"num_gpus": min(1.0, gpus / n),
                                          "num_cpus": max(1, min(2, cpus // n))}
        else:
            n = workers or cpus  # one single-threaded actor per CPU (docs/BATCH.md)
            actor_opts = {"num_cpus": max(1, cpus // n)}
        n = max(1, min(n, len(tasks)))
        threads = int(actor_opts["num_cpus"])
        actor_cls = ray.remote(max_restarts=0, **actor_opts)(PhotoWorker)
        counter = 0

        def new_actor() -> Any:
            nonlocal counter
            actor = actor_cls.remote(options, threads, f"ray-{counter}")
            counter += 1
            return actor

        actors = [new_actor() for _ in range(n)]
        try:
            ray.get([a.ready.remote() for a in actors])
        except RayActorError as exc:
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            code = 3 if "ModelFileError" in str(exc) else 1
            raise BatchFatal(f"The Ray workers could not start: {last}", code) from exc

        pending: deque[dict[str, Any]] = deque(tasks)
        idle: list[Any] = list(actors)
        inflight: dict[Any, tuple[Any, dict[str, Any]]] = {}
        deaths = 0
        try:
            while pending or inflight:
                while idle and pending:
                    actor, task = idle.pop(), pending.popleft()
                    inflight[actor.run.remote(task)] = (actor, task)
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                for ref in done:
                    actor, task = inflight.pop(ref)
                    try:
                        record = ray.get(ref)
                    except RayActorError as exc:
                        deaths += 1
                        if deaths > 2 * len(tasks) + n:
                            raise BatchFatal(f"Ray workers keep dying ({exc}).") from exc
                        remove_partial_bundle(Path(task["output"]))
                        if task["attempt"] >= MAX_ATTEMPTS:
                            on_record(died_record(task, "ray actor", "Ray actor died"))
                        else:
                            pending.appendleft(dict(task, attempt=task["attempt"] + 1))
                        idle.append(new_actor())  # a fresh actor in the dead one's place
                        continue
                    except (ray.exceptions.RayTaskError, GetTimeoutError) as exc:
                        record = make_record(task["photo"], task["name"], STATUS_FAILED,
                                             error=str(exc).strip().splitlines()[-1],
                                             worker="ray actor", attempts=task["attempt"])
                    idle.append(actor)
                    on_record(record)
                if tick is not None:
                    tick()
        except BaseException:
            for actor, task in inflight.values():
                ray.kill(actor, no_restart=True)
            if inflight:  # the kills are asynchronous: wait until the actors are gone
                ray.wait(list(inflight), num_returns=len(inflight), timeout=15.0)
            for actor, task in inflight.values():
                remove_partial_bundle(Path(task["output"]))
            raise
        for actor in idle:
            ray.kill(actor, no_restart=True)
    finally:
        if started_here:
            ray.shutdown()
