"""Flower as the execution engine of DP-FedAvg (optional extra: ``pip install disparate[flower]``).

A ServerApp/ClientApp pair that runs the very same code as the in-process simulation:

- the **ServerApp** runs :func:`disparate.federated.simulation.train_federated` with a
  :class:`FlowerExecutor`: participant sampling, server-side clipping, the streaming
  aggregator, the seeded noise, evaluation and the run directory are the simulation's;
- the **ClientApp** answers ``train`` messages -- (round, participant, global model) -- with
  :func:`disparate.federated.dpfedavg.local_update`, seeded by (seed, round, participant).

Hence a Flower run and an in-process run with the same seeds give the same model (tested with
a tiny model). Only the tied-weight-aware parameter dictionaries travel (an ``ArrayRecord`` of
the distinct parameters: the tied embedding/decoder matrix once), never a raw state_dict.

SuperNodes act as workers: participant ``i`` of a round is sent to node ``nodes[i % K]`` and
the ClientApp reads that participant's data from the shared preprocessing cache (the same
``data`` section), so every machine needs the cache on a shared or copied file system. (In a
cross-device deployment each SuperNode would hold its own participant's data instead.) At
most ``max_in_flight`` messages (default: one per node) are outstanding, which bounds the
memory the message layer holds to O(nodes x model); replies are folded into the running sum
as they arrive.

Ways to run it:

- ``disparate federated run EXPERIMENT --engine flower --supernodes K`` runs Flower's
  simulation runtime (Ray) on this machine; ``--ray-address auto`` (or ``RAY_ADDRESS``) joins
  an existing Ray cluster instead (``ray start --head`` on one machine, ``ray start
  --address=HEAD:6379`` on the others) -- see ``docs/federated.md``;
- ``flwr run`` with a Flower app project whose components are ``server_app`` and
  ``client_app`` of this module (run config keys ``experiment``, ``overrides``, ``out-dir``);
- :class:`InProcessGrid` runs the pair in this process without Ray (tests, debugging).

Requires flwr >= 1.21 (the Message API: ``flwr.app``, ``flwr.serverapp.Grid``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor

try:
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the Flower engine needs flwr >= 1.21: pip install 'disparate[flower]' "
        f"(import failed: {exc})") from exc

from disparate.config import ExperimentConfig, from_dict, load_experiment, to_dict
from disparate.federated.dpfedavg import DPFedAvgSettings, StreamingAggregator, local_update
from disparate.federated.reddit import FederatedTextData
from disparate.federated.simulation import (
    FederatedRun,
    build_global_model,
    load_federated_data,
    train_federated,
)

__all__ = [
    "FlowerExecutor",
    "InProcessGrid",
    "client_app",
    "handle_train",
    "make_server_app",
    "run_flower",
    "run_in_process",
    "server_app",
    "server_identity",
]

MESSAGE_TYPE = "train"


def to_record(params: Mapping[str, Tensor]) -> ArrayRecord:
    """An ArrayRecord of (distinct) parameters; float32 values travel exactly."""
    return ArrayRecord({n: t.detach().cpu().contiguous() for n, t in params.items()})


def from_record(record: ArrayRecord) -> dict[str, Tensor]:
    return {n: t.clone() for n, t in record.to_torch_state_dict().items()}


# --------------------------------------------------------------------------------- client


class _Worker:
    """What a ClientApp process keeps between messages: data, settings and a local model."""

    def __init__(self, config: ExperimentConfig, settings: DPFedAvgSettings,
                 data: FederatedTextData | None = None, device: str = "cpu") -> None:
        self.config = config
        self.settings = settings
        self.data = data if data is not None else load_federated_data(config)
        self.model = build_global_model(config, self.data.num_tokens).to(device)


_WORKERS: dict[str, _Worker] = {}
#: Pre-loaded data by config hash (so that an in-process Grid does not reload the cache).
_SHARED_DATA: dict[str, FederatedTextData] = {}


def _worker(config_json: str, settings_json: str, device: str) -> _Worker:
    key = hashlib.sha256((config_json + settings_json + device).encode()).hexdigest()
    worker = _WORKERS.get(key)
    if worker is None:
        config = from_dict(json.loads(config_json))
        settings = DPFedAvgSettings.from_json(settings_json)
        from disparate.config import config_hash

        worker = _Worker(config, settings, _SHARED_DATA.get(config_hash(config)), device)
        _WORKERS.clear()  # one experiment at a time per process
        _WORKERS[key] = worker
    return worker


def handle_train(msg: Message, context: Context) -> Message:
    """One participant's local update for one round (the ClientApp's ``train`` function)."""
    task = msg.content["task"]
    worker = _worker(str(task["config"]), str(task["settings"]), str(task["device"]))
    pid = int(task["participant"])
    round_index = int(task["round"])
    global_params = from_record(msg.content["global"])
    update = local_update(worker.model, global_params, worker.data.train_tokens(pid),
                          worker.settings, round_index=round_index, participant=pid)
    stats: dict[str, int | float] = {"participant": pid, "steps": update.steps,
                                     "tokens": update.tokens,
                                     "projections": update.projections}
    if update.loss is not None:
        stats["loss"] = float(update.loss)
    content = RecordDict({"update": to_record(update.delta), "stats": MetricRecord(stats)})
    return Message(content, reply_to=msg)


client_app = ClientApp()
client_app.train()(handle_train)


# --------------------------------------------------------------------------------- server


class FlowerExecutor:
    """Sends a round's participants to Flower SuperNodes and folds the replies into the sum."""

    def __init__(self, grid: Grid, config: ExperimentConfig, settings: DPFedAvgSettings, *,
                 max_in_flight: int | None = None, timeout_s: float | None = None,
                 pull_interval_s: float = 0.05, client_device: str = "cpu") -> None:
        self.grid = grid
        self.client_device = client_device
        self.config_json = json.dumps(to_dict(config), sort_keys=True)
        self.settings_json = settings.to_json()
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.pull_interval_s = pull_interval_s

    def _message(self, node: int, round_index: int, pid: int, global_rec: ArrayRecord
                 ) -> Message:
        task = ConfigRecord({"config": self.config_json, "settings": self.settings_json,
                             "round": round_index, "participant": pid,
                             "device": self.client_device})
        return Message(RecordDict({"global": global_rec, "task": task}), node, MESSAGE_TYPE,
                       group_id=str(round_index))

    def run_round(self, round_index: int, participants: Sequence[int],
                  global_params: Mapping[str, Tensor], aggregator: StreamingAggregator
                  ) -> None:
        nodes = sorted(self.grid.get_node_ids())
        if not nodes:
            raise RuntimeError("Flower: no SuperNodes connected")
        limit = self.max_in_flight or len(nodes)
        global_rec = to_record(global_params)
        queue = list(enumerate(participants))
        pending: dict[str, int] = {}
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while queue or pending:
            while queue and len(pending) < limit:
                i, pid = queue.pop(0)
                msg = self._message(nodes[i % len(nodes)], round_index, pid, global_rec)
                (msg_id,) = list(self.grid.push_messages([msg]))
                pending[msg_id] = pid
            replies = list(self.grid.pull_messages(list(pending)))
            if not replies:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"Flower: round {round_index}: no reply for "
                                       f"participants {sorted(pending.values())}")
                time.sleep(self.pull_interval_s)
                continue
            for reply in sorted(replies, key=lambda m: pending.get(
                    m.metadata.reply_to_message_id, -1)):
                pid = pending.pop(reply.metadata.reply_to_message_id)
                if reply.has_error():
                    raise RuntimeError(f"Flower: participant {pid} in round {round_index} "
                                       f"failed: {reply.error.reason}")
                stats = reply.content["stats"]
                aggregator.add(pid, from_record(reply.content["update"]),
                               loss=float(stats["loss"]) if "loss" in stats else None,
                               steps=int(stats["steps"]), tokens=int(stats["tokens"]),
                               projections=int(stats["projections"]))


def make_server_app(config: ExperimentConfig, out_dir: str | Path, *,
                    data: FederatedTextData | None = None, resume: bool = False,
                    overwrite: bool = False, progress: bool | None = None,
                    log: Callable[[str], None] | None = None,
                    max_in_flight: int | None = None, device: str = "cpu",
                    result: list[FederatedRun] | None = None) -> ServerApp:
    """A ServerApp that trains ``config`` into ``out_dir`` (the result is appended to
    ``result`` when given). ``device`` is that of the server's global model (evaluation) and of
    the ClientApps' local training; a GPU gives (slightly) different numbers than the CPU."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        def factory(cfg: ExperimentConfig, _data: FederatedTextData,
                    settings: DPFedAvgSettings, device: Any = "cpu") -> FlowerExecutor:
            return FlowerExecutor(grid, cfg, settings, max_in_flight=max_in_flight,
                                  client_device=device)

        run = train_federated(config, out_dir, data=data, executor=factory, resume=resume,
                              overwrite=overwrite, device=device, progress=progress, log=log,
                              engine="flower")
        if result is not None:
            result.append(run)

    return app


server_app = ServerApp()


@server_app.main()
def _main_from_run_config(grid: Grid, context: Context) -> None:
    """``flwr run`` entry: run config keys ``experiment``, ``overrides`` (``;``-separated
    KEY=VALUE), ``out-dir`` and optionally ``resume`` (bool) and ``device``."""
    rc = context.run_config
    overrides = [o for o in str(rc.get("overrides", "")).split(";") if o.strip()]
    config = load_experiment(str(rc["experiment"]), overrides)
    app = make_server_app(config, str(rc["out-dir"]), resume=bool(rc.get("resume", True)),
                          device=str(rc.get("device", "cpu")))
    app(grid, context)


def run_flower(config: ExperimentConfig, out_dir: str | Path, *, supernodes: int = 2,
               ray_address: str | None = None, num_cpus_per_client: float = 1.0,
               num_gpus_per_client: float = 0.0, resume: bool = False,
               overwrite: bool = False, progress: bool | None = None, device: str = "cpu",
               log: Callable[[str], None] | None = None) -> None:
    """Run ``config`` with Flower's simulation runtime (Ray): ``supernodes`` virtual workers,
    on this machine or, with ``ray_address`` (e.g. ``"auto"``), on an existing Ray cluster."""
    from flwr.simulation import run_simulation

    backend: dict[str, Any] = {"client_resources": {"num_cpus": num_cpus_per_client,
                                                    "num_gpus": num_gpus_per_client}}
    if ray_address:
        backend["init_args"] = {"address": ray_address}
    app = make_server_app(config, out_dir, resume=resume, overwrite=overwrite,
                          progress=progress, log=log, device=device)
    run_simulation(server_app=app, client_app=client_app, num_supernodes=supernodes,
                   backend_config=backend)


# --------------------------------------------------------------------------------- no Ray


class InProcessGrid(Grid):
    """A Grid that delivers every message to ``client_app`` in this process, in push order.

    No Ray, no SuperLink: for tests and debugging of the ServerApp/ClientApp pair. Replies are
    produced when pulled. Uses Flower's message metadata the way its own in-memory grid does.
    """

    def __init__(self, app: ClientApp, num_nodes: int = 2, *,
                 data: FederatedTextData | None = None,
                 config: ExperimentConfig | None = None) -> None:
        self.app = app
        self.node_ids = list(range(1, num_nodes + 1))
        self._queue: dict[str, Message] = {}
        self._run: Any = None
        self.delivered: list[tuple[int, int]] = []  # (node, participant) in delivery order
        if data is not None and config is not None:
            from disparate.config import config_hash

            _SHARED_DATA[config_hash(config)] = data

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = uuid.uuid4().hex
            msg.metadata.__dict__["_message_id"] = msg_id
            self._queue[msg_id] = msg
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        wanted = set(message_ids)
        out = []
        for msg_id in [m for m in self._queue if m in wanted]:
            msg = self._queue.pop(msg_id)
            node = msg.metadata.dst_node_id
            context = Context(0, node, {}, RecordDict(), {})
            self.delivered.append((node, int(msg.content["task"]["participant"])))
            out.append(self.app(msg, context))
        return out

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run_in_process(config: ExperimentConfig, out_dir: str | Path, *, num_nodes: int = 2,
                   data: FederatedTextData | None = None, max_in_flight: int | None = None,
                   grid: InProcessGrid | None = None, **kwargs: Any) -> FederatedRun:
    """Run the ServerApp/ClientApp pair through an :class:`InProcessGrid` (no Ray)."""
    data = data if data is not None else load_federated_data(config)
    result: list[FederatedRun] = []
    app = make_server_app(config, out_dir, data=data, result=result,
                          max_in_flight=max_in_flight, **kwargs)
    if grid is None:
        grid = InProcessGrid(client_app, num_nodes, data=data, config=config)
    with server_identity():
        app(grid, Context(0, 0, {}, RecordDict(), {}))
    return result[0]


@contextmanager
def server_identity() -> Iterator[None]:
    """Set the process's Flower task identity as the server runtime does (newer flwr sets
    message metadata from it); restored afterwards. A no-op for flwr without it."""
    try:
        from flwr.supercore.task_identity import TaskIdentity
    except ImportError:  # older flwr: message metadata does not need it
        yield
        return
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 0, 1
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
