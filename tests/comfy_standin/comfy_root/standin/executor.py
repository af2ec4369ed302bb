"""Running one queued prompt: node by node, reusing cached results, reporting on the websocket.

Runs in a worker thread (node functions block); everything it tells clients goes through the
thread-safe ``publish``. The messages, their order and their fields are ComfyUI 0.3.64's, as the
recorded traces show them; ``Outcome`` becomes the prompt's ``/history`` entry.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from typing import Any

import comfy.model_management as mm

from standin import faults, registry
from standin.cache import ResultCache, signatures
from standin.graph import Prompt, class_of, is_link
from standin.progress import Activity, ProgressBoard, Publish
from standin.run_plan import RunPlan
from standin.validation import qualified_name

log = logging.getLogger("standin.executor")

# Appended to an out-of-memory exception_message; clients show it.
OOM_ADVICE = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow "
              "worked before you might have accidentally set the batch_size to a large number.")


@dataclasses.dataclass
class Outcome:
    success: bool
    messages: list[tuple[str, dict[str, Any]]]  # the status messages, kept in /history
    outputs: dict[str, Any]  # node id -> UI output
    meta: dict[str, Any]


class NodeFailed(Exception):
    """A node raised (``cause``); ``report`` holds the fields of ``execution_error``."""

    def __init__(self, node_id: str, cause: BaseException, report: dict[str, Any]) -> None:
        super().__init__(str(cause))
        self.node_id, self.cause, self.report = node_id, cause, report


def _shown(value: Any) -> Any:
    """A node input as ``current_inputs`` shows it: JSON values as they are, objects as text."""
    plain = value is None or isinstance(value, (int, float, bool, str, dict))
    return value if plain else str(value)


class Executor:
    def __init__(self, publish: Publish, activity: Activity) -> None:
        self._publish = publish
        self._activity = activity
        self._results = ResultCache()  # node outputs (tuples)
        self._ui = ResultCache()  # UI outputs with their meta
        self._instances: dict[tuple[str, str], Any] = {}  # node objects live across prompts

    def run(self, prompt: Prompt, prompt_id: str, extra_data: dict[str, Any],
            outputs: list[str]) -> Outcome:
        mm.interrupt_current_processing(False)  # an interrupt only ever stops the running prompt
        client_id = extra_data.get("client_id")
        activity = self._activity
        activity.client_id, activity.prompt_id = client_id, prompt_id
        activity.board = ProgressBoard(self._publish, prompt_id, client_id)
        messages: list[tuple[str, dict[str, Any]]] = []

        def status(event: str, data: dict[str, Any], *, to_all: bool = False) -> None:
            data = {**data, "timestamp": int(time.time() * 1000)}
            messages.append((event, data))
            if client_id is not None or to_all:
                self._publish(event, data, client_id)

        status("execution_start", {"prompt_id": prompt_id})
        signature_of = signatures(prompt)
        self._results.use_for(signature_of)
        self._ui.use_for(signature_of)
        cached = [node_id for node_id in prompt if self._cached(node_id)]
        status("execution_cached", {"nodes": cached, "prompt_id": prompt_id})

        plan = RunPlan(prompt, outputs, self._cached)
        ran: list[str] = []
        success = True
        while not plan.done():
            node_id = plan.next_node()
            try:
                self._run_node(prompt, prompt_id, node_id, extra_data, ran)
            except NodeFailed as failure:
                success = False
                summary = {"prompt_id": prompt_id, "node_id": node_id,
                           "node_type": prompt[node_id]["class_type"], "executed": list(ran)}
                if isinstance(failure.cause, mm.InterruptProcessingException):
                    # Broadcast: whoever pressed stop learns it, even without a client id.
                    status("execution_interrupted", summary, to_all=True)
                else:
                    # current_outputs: ComfyUI lists every node of the prompt here.
                    status("execution_error", {**summary, **failure.report,
                                               "current_outputs": list(prompt)})
                break
            plan.finished(node_id)
        if success:
            status("execution_success", {"prompt_id": prompt_id})

        ui = {node_id: self._ui.get(node_id) for node_id in prompt}
        activity.node_id = None
        return Outcome(success, messages,
                       outputs={n: entry["output"] for n, entry in ui.items() if entry is not None},
                       meta={n: entry["meta"] for n, entry in ui.items() if entry is not None})

    def _cached(self, node_id: str) -> bool:
        return self._results.get(node_id) is not None

    def _send(self, event: str, data: dict[str, Any]) -> None:
        # Node-level messages go only to the client that queued the prompt.
        if self._activity.client_id is not None:
            self._publish(event, data, self._activity.client_id)

    def _run_node(self, prompt: Prompt, prompt_id: str, node_id: str, extra_data: dict[str, Any],
                  ran: list[str]) -> None:
        board = self._activity.board
        assert board is not None
        class_type = prompt[node_id]["class_type"]
        if self._cached(node_id):
            # A cached output node replays its UI output (None when it has none).
            replay = self._ui.get(node_id) or {}
            self._send("executed", {"node": node_id, "display_node": node_id,
                                    "output": replay.get("output"), "prompt_id": prompt_id})
            board.finished(node_id)
            return

        arguments: dict[str, Any] = {}
        try:
            board.started(node_id)
            arguments = self._arguments(prompt, node_id, extra_data)
            if self._activity.client_id is not None:
                self._activity.node_id = node_id
            self._send("executing", {"node": node_id, "display_node": node_id,
                                     "prompt_id": prompt_id})
            node_class = registry.NODE_CLASSES[class_type]
            key = (node_id, class_type)
            if key not in self._instances:
                self._instances[key] = node_class()
            instance = self._instances[key]
            mm.throw_exception_if_processing_interrupted()
            faults.raise_if_chosen(class_type, arguments)
            returned = getattr(instance, node_class.FUNCTION)(**arguments)
        except mm.InterruptProcessingException as e:
            log.info("Processing interrupted")  # the swap tests count this line
            raise NodeFailed(node_id, e, {}) from e
        except Exception as e:
            log.exception("node %s (%s) raised", node_id, class_type)
            advice = OOM_ADVICE if isinstance(e, mm.OOM_EXCEPTION) else ""
            raise NodeFailed(node_id, e, {
                "exception_message": f"{e}\n{advice}",
                "exception_type": qualified_name(type(e)),
                "traceback": traceback.format_tb(e.__traceback__),
                "current_inputs": {name: [_shown(v)] for name, v in arguments.items()},
            }) from e

        if isinstance(returned, dict):
            ui_output = returned.get("ui") or {}
            result = tuple(returned.get("result", ()))
        else:
            ui_output, result = {}, tuple(returned)
        if ui_output:
            self._ui.put(node_id, {"meta": {"node_id": node_id, "display_node": node_id,
                                            "parent_node": None, "real_node_id": node_id},
                                   "output": ui_output})
            self._send("executed", {"node": node_id, "display_node": node_id,
                                    "output": ui_output, "prompt_id": prompt_id})
        self._results.put(node_id, result)
        board.finished(node_id)
        ran.append(node_id)

    def _arguments(self, prompt: Prompt, node_id: str, extra_data: dict[str, Any]
                   ) -> dict[str, Any]:
        """Keyword arguments of the node function: constants, linked results, hidden values."""
        node_class = class_of(prompt, node_id)
        spec = registry.inputs_of(node_class)
        arguments: dict[str, Any] = {}
        for name, value in prompt[node_id]["inputs"].items():
            if is_link(value):
                produced = self._results.get(value[0])
                arguments[name] = None if produced is None or value[1] >= len(produced) \
                    else produced[value[1]]
            elif registry.section_of(spec, name) is not None:  # undeclared constants are dropped
                arguments[name] = value
        hidden_values = {"PROMPT": prompt, "EXTRA_PNGINFO": extra_data.get("extra_pnginfo"),
                         "UNIQUE_ID": node_id}
        for name, kind in spec.get("hidden", {}).items():
            if kind in hidden_values:
                arguments[name] = hidden_values[kind]
        return arguments
