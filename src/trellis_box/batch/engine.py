"""The batch engine behind ``trellis-box generate``: many images, one GPU kept busy, nothing lost.

Scheduling: up to ``1 + depth`` of our prompts sit on each ComfyUI worker at once (one running,
``depth`` queued), so when a prompt ends ComfyUI starts the next at once while we download the last
one's files and upload the next image. A slot frees when a prompt *ends on the server*, not when
its files are home. A container running several workers lists them in ``/trellis-box/info``
(``comfyui/workers.py``): each gets its own client and slots, and the next input goes to whichever
worker frees a slot first; a plain ComfyUI is one worker. ``stagger_s`` spaces the workers' first
prompts, one worker's turn after the other. Once every input is out, a worker left with nothing
takes over the last prompt still waiting in another worker's queue (withdrawn there before it
starts): the batch's tail runs on every worker, not behind one busy worker.

Every input gets one outcome and a ``<name>.json`` report; ``<name>.glb`` and
``<name>.cutout.png`` beside it on success. Files are renamed into place whole, the report last:
a report with ``status: ok`` and the key of the same image content and parameters means the
input is done, and a re-run skips it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trellis_box.batch import glb, images
from trellis_box.batch.files import (
    KEY_VERSION,
    Item,
    finished_report,
    job_key,
    legacy_key_v1,
    output_paths,
    plan,
    write_report,
)
from trellis_box.batch.report import (
    ExportRerun,
    InputFacts,
    JobReport,
    NodeTiming,
    ReportFiles,
    Timings,
)
from trellis_box.comfyui import protocol, workflow
from trellis_box.comfyui.client import ComfyClient, Connection, JobResult, Timeouts
from trellis_box.comfyui.explain import no_object, write_failed
from trellis_box.comfyui.workers import worker_urls
from trellis_box.errors import (
    ComfyUnreachableError,
    NoObjectFoundError,
    OutOfMemoryError,
    OutputGoneError,
    OutputMissingError,
    PromptLostError,
    PromptWithdrawnError,
    TrellisBoxError,
)
from trellis_box.gpu import profiles
from trellis_box.storage import Storage
from trellis_box.storage.local import LocalStorage

#: Attempts per input when the server forgets a prompt (restart) or runs out of memory with
#: ``auto_resolution`` (each retry one rung lower).
MAX_ATTEMPTS = 3
#: How long a cancelled submission still waits for the server's answer to its POST /prompt.
QUEUE_ANSWER_GRACE_S = 10.0


@dataclass(frozen=True)
class BatchOptions:
    #: Where files are written first, each renamed into place whole.
    out_dir: Path
    workflow: workflow.WorkflowOptions = workflow.WorkflowOptions()
    auto_resolution: bool = False
    #: Per-prompt limit in seconds, counted from the moment it starts running.
    job_timeout: float | None = 3600.0
    #: Prompts kept queued behind the running one, on each worker.
    depth: int = 2
    #: Feed at most this many of the server's ComfyUI workers (None: every one it lists).
    max_workers: int | None = None
    #: Worker k gets its first prompt ``k * stagger_s`` seconds after the batch starts. Workers
    #: started together stay in step (measured on an H200: their generators shared the GPU at the
    #: start of every round, then all post-processed while it idled); a stagger near one job's GPU
    #: time lets them take turns. 0: off, until a GPU run measures it.
    stagger_s: float = 0.0
    #: Downloads at once (each streams a GLB of tens of MB).
    downloads: int = 4
    #: Where finished files go from ``out_dir`` (report last; S3); ``None``: they stay there.
    outputs: Storage | None = None

    @property
    def store(self) -> Storage:
        return self.outputs if self.outputs is not None else LocalStorage(self.out_dir)


@dataclass
class Outcome:
    item: Item
    status: str  # ok | skipped | failed | interrupted
    error: TrellisBoxError | None = None
    #: The report written for it (none for an input the interruption left unrun).
    report: JobReport | None = None
    seconds: float = 0.0

    @property
    def glb(self) -> str | None:
        """The GLB's path or URL (``s3://``)."""
        files = self.report.files if self.report else None
        return files.glb if files else None


@dataclass
class BatchReport:
    outcomes: list[Outcome]
    resolution: str
    server: dict[str, Any]
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("failed", "interrupted")]


@dataclass(frozen=True)
class Planned:
    """Every input of the batch, known before the first is checked."""

    items: tuple[Item, ...]


@dataclass(frozen=True)
class Queued:
    item: Item
    #: Set when the prompt was taken back from this worker's queue to run on an idle one.
    moved_from: str | None = None


@dataclass(frozen=True)
class NodeEvent:
    """A message of the server about one input's prompt, with the class of the node it names."""

    item: Item
    message: protocol.PromptMessage
    node_class: str | None = None


@dataclass(frozen=True)
class Done:
    outcome: Outcome

    @property
    def item(self) -> Item:
        return self.outcome.item


#: What a person may want to see; :class:`Connection` says the server went away or came back.
Event = Planned | Queued | NodeEvent | Done | Connection
Observer = Callable[[Event], None]


async def server_facts(comfy: ComfyClient) -> tuple[dict[str, Any], profiles.Profile | None]:
    """Server and version facts for the reports, and the GPU profile that bounds resolution.

    ``/trellis-box/info`` (our container) is preferred; a plain ComfyUI is judged by the VRAM
    ``/system_stats`` reports. A CPU-only server has no profile: nothing to refuse.
    """
    stats = await comfy.http.system_stats()
    info = await comfy.http.trellis_info()
    system = stats.get("system") or {}
    device = (stats.get("devices") or [{}])[0]
    facts = {
        "url": comfy.base_url,
        "comfyui_version": system.get("comfyui_version"),
        "python_version": system.get("python_version"),
        "pytorch_version": system.get("pytorch_version"),
        "device": {k: device.get(k) for k in ("name", "type", "vram_total")},
        "trellis_box": info,
    }
    if info and info.get("allowed_resolutions") is not None:
        p = info.get("profile") or {}
        allowed = tuple(str(r) for r in info["allowed_resolutions"])
        top = p.get("max_resolution") or (allowed[-1] if allowed else None)
        return facts, profiles.Profile(
            str(p.get("gpu_name") or device.get("name") or "gpu"), int(p.get("vram_bytes") or 0),
            bool(p.get("low_vram", True)), top, allowed,
            str(p["lowered_from"]) if p.get("lowered_from") else None)
    if device.get("type") in (None, "cpu"):
        return facts, None
    return facts, profiles.profile_for(int(device.get("vram_total") or 0))


async def run_batch(server: str, inputs: list[Path], options: BatchOptions, *,
                    timeouts: Timeouts = Timeouts(), on_event: Observer | None = None) -> BatchReport:
    """Generate a GLB for every input; returns one outcome each (cancelling returns early)."""
    return await run_items(server, plan(inputs, out_dir=options.out_dir), options,
                           timeouts=timeouts, on_event=on_event)


async def run_items(server: str, items: list[Item], options: BatchOptions, *,
                    timeouts: Timeouts = Timeouts(), on_event: Observer | None = None) -> BatchReport:
    """:func:`run_batch` for inputs already planned (``batch.sources`` stages remote ones)."""
    emit = on_event or (lambda e: None)
    # Bad parameters fail here, before anything is uploaded (ComfyUI would run half the graph).
    workflow.validate(workflow.build(options.workflow, "input.png"), workflow.recorded_object_info())
    try:
        options.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failed(options.out_dir, exc) from exc
    emit(Planned(tuple(items)))
    async with contextlib.AsyncExitStack() as opened:
        comfy = await opened.enter_async_context(
            ComfyClient(server, timeouts=timeouts, on_connection=emit))
        facts, profile = await server_facts(comfy)
        clients = [comfy]
        facts["workers"], facts["workers_unreachable"] = [comfy.base_url], []
        for url in worker_urls(comfy.base_url, facts["trellis_box"])[1:options.max_workers or None]:
            worker = await opened.enter_async_context(ComfyClient(url, timeouts=timeouts,
                                                                  on_connection=emit))
            try:
                await worker.http.system_stats()
            except ComfyUnreachableError:
                # Its port is not published where we are (only 8188 is by default): feed the
                # others, and say so in every report.
                facts["workers_unreachable"].append(url)
                continue
            clients.append(worker)
            facts["workers"].append(url)
        # low_vram is the profile's and every other loader input the default's: the model
        # loaders' inputs then equal those of the container's warm-up, and the first image
        # finds the models already loaded.
        run_options = options.workflow
        if profile is not None:
            run_options = run_options.replace(low_vram=profile.low_vram,
                                              resolution=profiles.choose_resolution(
                                                  run_options.resolution, profile,
                                                  auto_resolution=options.auto_resolution))
        engine = _Engine(clients, options, facts, run_options, emit)
        return await engine.run(items)


class _Slots:
    """``1 + depth`` slots per worker; :meth:`acquire` takes one on a worker that has one free
    (the one with most free: a batch smaller than the slots still spreads over every worker), and
    not before that worker's turn when the batch staggers its workers' starts."""

    def __init__(self, workers: list[ComfyClient], per_worker: int, stagger_s: float = 0.0) -> None:
        self._free = {id(w): per_worker for w in workers}
        self._per_worker = per_worker
        self._workers = workers
        self._waiters: list[asyncio.Future[None]] = []
        start = time.monotonic()
        self._opens = {id(w): start + k * stagger_s for k, w in enumerate(workers)}

    async def acquire(self, worker: ComfyClient | None = None) -> ComfyClient:
        """A slot on any worker, or on ``worker`` (a job that must go back where its cached
        results are)."""
        candidates = self._workers if worker is None else [worker]
        while True:
            free = [w for w in candidates if self._free[id(w)] > 0]
            now = time.monotonic()
            # Until every worker's turn has come, an open worker takes no prompt beyond the one it
            # runs: the next input waits for the next worker's turn instead of queueing there.
            waiting_turns = any(opens > now for opens in self._opens.values())
            open_now = [w for w in free if self._opens[id(w)] <= now
                        and (not waiting_turns or self._free[id(w)] == self._per_worker)]
            if open_now:
                got = max(open_now, key=lambda w: self._free[id(w)])
                self._free[id(got)] -= 1
                return got
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            # A free worker whose turn is still to come: wake at its turn, or at a release first.
            turn = min((self._opens[id(w)] for w in free if self._opens[id(w)] > now), default=None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), None if turn is None else turn - now)

    def idle(self) -> list[ComfyClient]:
        """Workers whose turn has come and that hold none of our prompts."""
        now = time.monotonic()
        return [w for w in self._workers
                if self._free[id(w)] == self._per_worker and self._opens[id(w)] <= now]

    def take(self, worker: ComfyClient) -> bool:
        """A slot on ``worker`` if it has one free now (never waits)."""
        if self._free[id(worker)] == 0:
            return False
        self._free[id(worker)] -= 1
        return True

    def release(self, worker: ComfyClient) -> None:
        self._free[id(worker)] += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass
class _Job:
    item: Item
    image: images.NormalisedImage
    key: str
    options: workflow.WorkflowOptions
    #: The worker it runs on: its uploads, prompt, progress and files are all there.
    comfy: ComfyClient | None = None
    graph: dict[str, Any] = field(default_factory=dict)
    prompt_id: str | None = None
    queued_at: float = 0.0
    #: The server has sent a message about its prompt: it runs (pending prompts get none).
    started: bool = False
    #: The idle worker it is being moved to (a slot taken there), while the move is tried.
    moving_to: ComfyClient | None = None
    #: A move found it started: it stays.
    stays: bool = False
    #: Set when a stale cached answer named a deleted file and the export was run again.
    export_rerun: ExportRerun | None = None
    #: Its report is in place (files first): the input is done even if a cancel lands now.
    committed: JobReport | None = None


class _Engine:
    def __init__(self, workers: list[ComfyClient], options: BatchOptions, facts: dict[str, Any],
                 run_options: workflow.WorkflowOptions, emit: Observer) -> None:
        self.workers, self.options, self.facts, self.emit = workers, options, facts, emit
        # The key keeps the *requested* options: a downgrade must not make a re-run miss.
        self.requested = options.workflow
        self.run_options = run_options
        self.slots = _Slots(workers, 1 + max(options.depth, 1), options.stagger_s)
        self.downloads = asyncio.Semaphore(options.downloads)
        self.ours: set[str] = set()
        self.outcomes: dict[Item, Outcome] = {}
        #: Jobs queued on a worker and not yet ended there.
        self.on_servers: list[_Job] = []
        #: Every input has been queued (or skipped, or failed): idle workers may take queued ones.
        self.dispatched = False
        self.moves: set[asyncio.Task[None]] = set()
        #: Set once the server stays unreachable: the rest of the batch fails fast with it.
        self.broken: ComfyUnreachableError | None = None

    async def run(self, items: list[Item]) -> BatchReport:
        started = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        interrupted = False
        try:
            for item in items:
                rest = await self._start(item)
                if rest is not None:
                    tasks.append(asyncio.create_task(rest, name=f"job {item.name}"))
            self.dispatched = True
            self._rebalance()
            await asyncio.gather(*tasks)
            # A move that found its prompt started may still be reading the queue.
            await asyncio.gather(*self.moves)
        except asyncio.CancelledError:
            interrupted = True
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # the cancel is handled here: clean up, then report
            self.dispatched = False  # the jobs' slots, freed as they end, start no more moves
            for task in [*tasks, *self.moves]:
                task.cancel()
            # Before the jobs end: one letting its upload land must not keep the GPU on prompts
            # nobody will collect.
            await self._withdraw()
            await asyncio.gather(*tasks, *self.moves, return_exceptions=True)
        outcomes = [self.outcomes.get(i) or Outcome(i, "interrupted") for i in items]
        return BatchReport(outcomes, self.run_options.resolution, self.facts, interrupted,
                           time.monotonic() - started)

    def _done(self, outcome: Outcome) -> None:
        self.outcomes[outcome.item] = outcome
        self.emit(Done(outcome))

    async def _start(self, item: Item) -> Coroutine[Any, Any, None] | None:
        """Check an input, skip it if done, else queue it: here, one input after the other, so
        the servers run inputs in their order. What is left of it (following its prompt, or
        uploading its failure report) is returned, for the run to do beside the next inputs and
        to cancel with the others; ``None`` where nothing is (a skip)."""
        if self.broken is not None:
            return self._fail(item, self.broken, key=None, input_facts=InputFacts(item.where))
        try:
            image = await asyncio.to_thread(images.normalise, item.source)
        except TrellisBoxError as exc:
            return self._fail(item, exc, key=None, input_facts=InputFacts(item.where))
        key = job_key(image.sha256, self.requested)
        report = await asyncio.to_thread(finished_report, self.options.store, item.name, key,
                                         legacy_key_v1(image.sha256, self.requested))
        if report is not None:
            self._done(Outcome(item, "skipped", report=report))
            return None
        job = _Job(item, image, key, self.run_options)
        job.comfy = await self.slots.acquire()
        try:
            await self._submit(job)
        except TrellisBoxError as exc:
            self.slots.release(job.comfy)
            return self._failed_job(job, exc)
        return self._follow(job)

    async def _submit(self, job: _Job, *, moved_from: str | None = None) -> None:
        comfy = _on(job)
        for attempt in range(MAX_ATTEMPTS):
            try:
                name = await comfy.http.upload_bytes(job.image.png, ".png")
                job.graph = workflow.build(job.options, name)
                job.started = job.stays = False
                job.prompt_id = await self._queue(comfy, job)
                if moved_from is None:
                    job.queued_at = time.monotonic()
                self.ours.add(job.prompt_id)
                if job not in self.on_servers:
                    self.on_servers.append(job)
                self.emit(Queued(job.item, moved_from))
                return
            except ComfyUnreachableError:
                if attempt == MAX_ATTEMPTS - 1:
                    raise
                await comfy.wait_connected()

    async def _queue(self, comfy: ComfyClient, job: _Job) -> str:
        """POST the prompt; a cancel meanwhile waits for the answer (briefly): the server may have
        queued the prompt already, and the withdrawal can only find it ours by its id."""
        queueing = asyncio.ensure_future(comfy.queue_prompt(
            job.graph, on_message=functools.partial(self._progress, job)))
        try:
            return await asyncio.shield(queueing)
        except asyncio.CancelledError:
            done, _ = await asyncio.wait({queueing}, timeout=QUEUE_ANSWER_GRACE_S)
            if queueing in done and not queueing.cancelled() and queueing.exception() is None:
                self.ours.add(queueing.result())
            queueing.cancel()
            raise

    def _progress(self, job: _Job, msg: protocol.PromptMessage) -> None:
        job.started = True
        node = getattr(msg, "node", None)
        node_class = (job.graph.get(node) or {}).get("class_type") if node else None
        self.emit(NodeEvent(job.item, msg, node_class=node_class))

    def _failed_job(self, job: _Job, exc: TrellisBoxError) -> Coroutine[Any, Any, None]:
        """:meth:`_fail` for a job. Not a coroutine itself: a server found gone must count at
        once, before the next input is tried on it, not when the report's upload begins."""
        if isinstance(exc, ComfyUnreachableError):
            self.broken = exc
        if isinstance(exc, NoObjectFoundError):
            f = exc.facts
            exc = no_object(f["prompt_id"], f["node"], f["class_type"], f["cause"],
                            source=str(job.item.source))
        return self._fail(job.item, exc, key=job.key, input_facts=self._input_facts(job),
                          prompt_id=job.prompt_id, job=job)

    async def _follow(self, job: _Job) -> None:
        """Follow a queued job to its end on the server (queueing it again where that helps),
        then bring its files home."""
        slot_held = True
        try:
            result = await self._finish_on_server(job)
            self._release(_on(job))
            slot_held = False
            try:
                report = await self._collect(job, result)
            except OutputGoneError as gone:
                # A prompt ComfyUI ran before is answered from its cache, naming files deleted
                # from its output folder since. New export names change only the export and save
                # nodes' inputs: those run again from the cached mesh, for almost nothing.
                await self.slots.acquire(_on(job))
                slot_held = True
                job.export_rerun = ExportRerun(gone.facts.get("file"), result.prompt_id)
                job.options = _fresh_export_names(job.options, result.prompt_id)
                await self._submit(job)
                result = await self._finish_on_server(job)
                self._release(_on(job))
                slot_held = False
                report = await self._collect(job, result)
            self._done(Outcome(job.item, "ok", report=report,
                               seconds=time.monotonic() - job.queued_at))
        except TrellisBoxError as exc:
            failing = self._failed_job(job, exc)  # a server found gone counts before the release
            if slot_held:
                # The worker takes the next input while the failure's report goes to storage.
                self._release(_on(job))
                slot_held = False
            await failing
        except asyncio.CancelledError:
            # Resume skips an input whose report is in place: the interrupted run says so too.
            if job.committed is not None:
                self._done(Outcome(job.item, "ok", report=job.committed,
                                   seconds=time.monotonic() - job.queued_at))
            raise
        finally:
            # Ended on the server however it ended (a failed re-queue too): never a move's pick.
            self._ended_on_server(job)
            if slot_held:
                self._release(_on(job))

    async def _finish_on_server(self, job: _Job) -> JobResult:
        """Wait for the queued prompt to end, queueing the job again while :meth:`_retry` says."""
        attempt = 0
        while True:
            try:
                result = await _on(job).wait(job.prompt_id or "",
                                               timeout=self.options.job_timeout)
            except PromptWithdrawnError:
                # Taken back by _move for the idle worker whose slot it holds.
                self.ours.discard(job.prompt_id or "")
                old, job.comfy, job.moving_to = _on(job), job.moving_to, None
                self._release(old)
                await self._submit(job, moved_from=old.base_url)
                continue
            except TrellisBoxError as exc:
                # Not on cancellation: Ctrl-C must still find the prompt ours to withdraw.
                self.ours.discard(job.prompt_id or "")
                if not self._retry(job, exc, attempt):
                    self._ended_on_server(job)
                    raise
                attempt += 1
                await self._submit(job)
                continue
            self.ours.discard(job.prompt_id or "")
            self._ended_on_server(job)
            return result

    def _ended_on_server(self, job: _Job) -> None:
        with contextlib.suppress(ValueError):
            self.on_servers.remove(job)

    def _release(self, worker: ComfyClient) -> None:
        self.slots.release(worker)
        self._rebalance()

    def _rebalance(self) -> None:
        """Once every input is out: give each idle worker the prompt that would start last
        elsewhere, if it still waits in a queue."""
        if not self.dispatched:
            return
        for idle in self.slots.idle():
            waiting = [j for j in self.on_servers if j.comfy is not idle and not j.started
                       and not j.stays and j.moving_to is None and j.prompt_id is not None]
            if not waiting:
                return
            # The last queued on the worker with the longest queue starts last.
            queued_on = collections.Counter(id(j.comfy) for j in waiting)
            job = max(waiting, key=lambda j: (queued_on[id(j.comfy)], j.queued_at))
            if not self.slots.take(idle):
                continue
            job.moving_to = idle
            task = asyncio.create_task(self._move(job), name=f"move {job.item.name}")
            self.moves.add(task)
            task.add_done_callback(self.moves.discard)

    async def _move(self, job: _Job) -> None:
        """Withdraw ``job``'s prompt from its worker's queue; its follower then queues it on
        ``job.moving_to``. Where it started first, it stays and the idle worker's slot is freed."""
        to = job.moving_to
        assert to is not None
        try:
            moved = await _on(job).withdraw(job.prompt_id or "")
        except TrellisBoxError:
            moved = False
        if not moved:
            job.moving_to, job.stays = None, True
            self._release(to)

    def _retry(self, job: _Job, exc: TrellisBoxError, attempt: int) -> bool:
        """Whether to queue the job again: the server forgot it, or (with auto resolution) it
        ran out of memory and a lower resolution exists."""
        if attempt >= MAX_ATTEMPTS - 1:
            return False
        if isinstance(exc, PromptLostError):
            return True
        lower = exc.facts.get("lower_resolution") if isinstance(exc, OutOfMemoryError) else None
        if self.options.auto_resolution and lower:
            job.options = job.options.replace(resolution=lower)
            return True
        return False

    async def _collect(self, job: _Job, result: JobResult) -> JobReport:
        paths = output_paths(self.options.out_dir, job.item.name)
        glbs = result.files(workflow.GLB_OUTPUT_NODE, "3d")
        cutouts = result.files(workflow.CUTOUT_NODE, "images")
        if not glbs or not cutouts:
            missing = workflow.GLB_OUTPUT_CLASS if not glbs else "SaveImage (cutout)"
            raise OutputMissingError(
                f"prompt {result.prompt_id} finished but /history names no file of {missing}",
                detail=f"outputs reported by nodes: {', '.join(sorted(result.outputs)) or 'none'}",
                fix="install the trellis-box node pack in custom_nodes/ (the server log says "
                    "whether it loaded); without it Trellis2ExportMesh's GLB stays invisible",
                prompt_id=result.prompt_id)
        async with self.downloads:
            # Both finish before an error is raised: a download still running would race the
            # next attempt's file of the same name.
            http = _on(job).http
            fetched = await asyncio.gather(http.download(glbs[0], paths["glb"]),
                                           http.download(cutouts[0], paths["cutout"]),
                                           return_exceptions=True)
        for outcome in fetched:
            if isinstance(outcome, BaseException):
                raise outcome
        stats = await asyncio.to_thread(glb.glb_stats, paths["glb"])
        timings = Timings(
            client_seconds=round(time.monotonic() - job.queued_at, 3),
            server_ms=(result.finished_ms - result.started_ms
                       if result.finished_ms and result.started_ms else None),
            nodes=tuple(NodeTiming(n, job.graph.get(n, {}).get("class_type"), round(s, 3))
                        for n, s in result.node_seconds.items()),
            cached_nodes=result.cached_nodes)
        report = self._report("ok", job.key, self._input_facts(job), job=job,
                              prompt_id=result.prompt_id, timings=timings, glb=stats,
                              files=ReportFiles(self.options.store.url(paths["glb"].name),
                                                self.options.store.url(paths["cutout"].name)))
        write_report(paths["report"], report)

        def committed() -> None:
            job.committed = report

        await self._upload([paths["glb"], paths["cutout"], paths["report"]], landed=committed)
        return report

    async def _upload(self, paths: list[Path], *, landed: Callable[[], None] = lambda: None
                      ) -> None:
        """:meth:`_store` in a thread, so every other job goes on meanwhile; ``landed`` runs once
        every file is in place (at once where there is no output storage)."""
        outputs = self.options.outputs
        if outputs is None:
            landed()
            return
        upload = asyncio.ensure_future(asyncio.to_thread(self._store, outputs, paths))
        try:
            await asyncio.shield(upload)
        except asyncio.CancelledError:
            # The thread cannot be stopped: let the upload land, so the store and the run's
            # report agree on whether this input is done. Through every cancel: the run
            # cancels its jobs again when another job's cancel reaches it first.
            while not upload.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([upload])
            if upload.exception() is None:
                landed()
            raise
        landed()

    @staticmethod
    def _store(outputs: Storage, paths: list[Path]) -> None:
        """Hand finished files to the output storage in order, the report last: a report says
        the input is done, so it must never arrive before its files."""
        for path in paths:
            outputs.write(path.name, path)
            path.unlink(missing_ok=True)

    def _report(self, status: str, key: str | None, input_facts: InputFacts, *,
                job: _Job | None = None, **outcome: Any) -> JobReport:
        """The one place a report is made: what every report holds, what ran, the outcome."""
        ran: dict[str, Any] = {}
        if job is not None and status == "ok":
            ran = {"key_version": KEY_VERSION, "resolution": job.options.resolution,
                   "low_vram": job.options.low_vram, "seed": job.options.seed,
                   "export_rerun": job.export_rerun}
        # What ran (the profile's low_vram, a stepped-down resolution); the key is the request's.
        options = job.options if job is not None else self.run_options
        return JobReport(status=status, key=key, input=input_facts,
                         parameters=options.as_dict(), requested=self.requested.as_dict(),
                         server=self.facts, **ran, **outcome)

    @staticmethod
    def _input_facts(job: _Job) -> InputFacts:
        i = job.image
        return InputFacts(job.item.where, i.sha256, i.width, i.height, i.mode, i.changes)

    async def _fail(self, item: Item, exc: TrellisBoxError, *, key: str | None,
                    input_facts: InputFacts, prompt_id: str | None = None,
                    job: _Job | None = None) -> None:
        report = self._report("failed", key, input_facts, job=job, prompt_id=prompt_id,
                              error=exc.to_dict())
        try:
            with contextlib.suppress(TrellisBoxError):
                path = output_paths(self.options.out_dir, item.name)["report"]
                write_report(path, report)
                await self._upload([path])
        finally:
            # After a cancel too, once the upload has ended: the input failed whether or not
            # its report landed, and a failed report never makes a re-run skip it.
            self._done(Outcome(item, "failed", error=exc, report=report))

    async def _withdraw(self) -> None:
        """After Ctrl-C: on every worker at once, stop our running prompt and drop our queued
        ones; others' stay."""
        if self.ours:
            await asyncio.gather(*(self._withdraw_from(w) for w in self.workers))

    async def _withdraw_from(self, comfy: ComfyClient) -> None:
        with contextlib.suppress(TrellisBoxError):
            pending = [p for p in (await comfy.http.queue()).pending if p in self.ours]
            if pending:
                await comfy.http.delete_pending(pending)
            # Read again: one of ours may have started between the read and the delete.
            for running in (await comfy.http.queue()).running:
                if running in self.ours:
                    await comfy.http.interrupt(running)


def _on(job: _Job) -> ComfyClient:
    """The worker a job was given when its slot was taken."""
    assert job.comfy is not None, "a job gets its worker before it is submitted"
    return job.comfy


def _fresh_export_names(options: workflow.WorkflowOptions, stale_prompt_id: str
                        ) -> workflow.WorkflowOptions:
    """Export and cutout prefixes no earlier prompt used, so ComfyUI cannot answer from cache."""
    tag = stale_prompt_id.replace("-", "")[:8]
    return options.replace(glb_prefix=f"{options.glb_prefix}-{tag}",
                           cutout_prefix=f"{options.cutout_prefix}-{tag}")
