"""Validation, the prompt queue and the executor, with ComfyUI 0.3.64's observable behaviour.

What clients see is kept: validation error shapes (``validate_prompt``), the FIFO queue and
history records, the classic cache (an identical resubmission runs nothing and replays
``executed``), the order nodes run in (output nodes first when ready), and the websocket
messages with their fields. Node calls are not mapped over input lists: every input is one value.
"""

from __future__ import annotations

import copy
import heapq
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from typing import Any, NamedTuple

import comfy.model_management
import nodes
import standin_options

Prompt = dict[str, dict[str, Any]]


def is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int))


def full_type_name(klass: type) -> str:
    if klass.__module__ == "builtins":
        return klass.__qualname__
    return f"{klass.__module__}.{klass.__qualname__}"


def get_input_info(class_def: Any, input_name: str, valid_inputs: dict[str, Any] | None = None
                   ) -> tuple[Any, str | None, dict[str, Any] | None]:
    valid_inputs = valid_inputs or class_def.INPUT_TYPES()
    for category in ("required", "optional", "hidden"):
        if input_name in valid_inputs.get(category, {}):
            info = valid_inputs[category][input_name]
            if category == "hidden":
                return info, category, {}
            return info[0], category, (info[1] if len(info) > 1 else {})
    return None, None, None


def validate_node_input(received_type: str, input_type: Any) -> bool:
    if received_type == input_type:
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    accepted = {t.strip() for t in input_type.split(",")}
    return bool(received & accepted)


# --- validation -------------------------------------------------------------------------

def _error(kind: str, message: str, details: str, **extra_info: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


Validation = tuple[bool, list[dict[str, Any]], str]  # valid, errors, node id


def validate_inputs(prompt: Prompt, unique_id: str, validated: dict[str, Validation]) -> Validation:
    if unique_id in validated:
        return validated[unique_id]
    inputs = prompt[unique_id]["inputs"]
    class_type = prompt[unique_id]["class_type"]
    obj_class = nodes.NODE_CLASS_MAPPINGS[class_type]
    class_inputs = obj_class.INPUT_TYPES()
    valid_inputs = list(class_inputs.get("required", {})) + list(class_inputs.get("optional", {}))
    validate_function = getattr(obj_class, "VALIDATE_INPUTS", None)
    validate_function_inputs: list[str] = []
    if validate_function is not None:
        validate_function_inputs = list(validate_function.__code__.co_varnames[
            1:validate_function.__code__.co_argcount])
    errors: list[dict[str, Any]] = []
    valid = True

    for x in valid_inputs:
        input_type, input_category, extra_info = get_input_info(obj_class, x, class_inputs)
        assert extra_info is not None
        if x not in inputs:
            if input_category == "required":
                errors.append(_error("required_input_missing", "Required input is missing", x,
                                     input_name=x))
            continue
        val = inputs[x]
        info = [input_type, extra_info]
        if isinstance(val, list):
            if len(val) != 2:
                errors.append(_error("bad_linked_input",
                                     "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                     x, input_name=x, input_config=info, received_value=val))
                continue
            o_id = val[0]
            received_type = nodes.NODE_CLASS_MAPPINGS[prompt[o_id]["class_type"]].RETURN_TYPES[val[1]]
            if not validate_node_input(received_type, input_type):
                errors.append(_error(
                    "return_type_mismatch", "Return type mismatch between linked nodes",
                    f"{x}, received_type({received_type}) mismatch input_type({input_type})",
                    input_name=x, input_config=info, received_type=received_type, linked_node=val))
                continue
            try:
                if validate_inputs(prompt, o_id, validated)[0] is False:
                    valid = False
            except Exception as ex:
                typ, _, tb = sys.exc_info()
                valid = False
                validated[o_id] = (False, [_error(
                    "exception_during_inner_validation", "Exception when validating inner node",
                    str(ex), input_name=x, input_config=info, exception_message=str(ex),
                    exception_type=full_type_name(typ or type(ex)),
                    traceback=traceback.format_tb(tb), linked_node=val)], o_id)
            continue

        try:
            if isinstance(val, dict) and "__value__" in val:
                val = inputs[x] = val["__value__"]
            converter = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(
                input_type if isinstance(input_type, str) else "")
            if converter is not None:
                val = inputs[x] = converter(val)
        except Exception as ex:
            errors.append(_error("invalid_input_type",
                                 f"Failed to convert an input value to a {input_type} value",
                                 f"{x}, {val}, {ex}", input_name=x, input_config=info,
                                 received_value=val, exception_message=str(ex)))
            continue

        if x in validate_function_inputs:
            continue
        if "min" in extra_info and val < extra_info["min"]:
            errors.append(_error("value_smaller_than_min",
                                 f"Value {val} smaller than min of {extra_info['min']}", x,
                                 input_name=x, input_config=info, received_value=val))
            continue
        if "max" in extra_info and val > extra_info["max"]:
            errors.append(_error("value_bigger_than_max",
                                 f"Value {val} bigger than max of {extra_info['max']}", x,
                                 input_name=x, input_config=info, received_value=val))
            continue
        if isinstance(input_type, list) and val not in input_type:
            # Long option lists (scanned model files) are not echoed back.
            too_long = len(input_type) > 20
            list_info = f"(list of length {len(input_type)})" if too_long else str(input_type)
            errors.append(_error("value_not_in_list", "Value not in list",
                                 f"{x}: '{val}' not in {list_info}", input_name=x,
                                 input_config=None if too_long else info, received_value=val))
            continue

    if validate_function is not None:
        # Links are not resolved at validation time: the function sees None for them.
        arguments = {x: None if is_link(inputs[x]) else inputs[x]
                     for x in validate_function_inputs if x in inputs}
        result = validate_function(**arguments)
        if result is not True:
            for x in arguments:
                details = x if result is False else f"{x} - {result}"
                errors.append(_error("custom_validation_failed", "Custom validation failed for node",
                                     details, input_name=x))

    ret = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
    validated[unique_id] = ret
    return ret


def validate_prompt(prompt: Prompt, partial_execution_list: list[str] | None
                    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    outputs = set()
    for x in prompt:
        if "class_type" not in prompt[x]:
            return (False, _error("invalid_prompt",
                                  "Cannot execute because a node is missing the class_type property.",
                                  f"Node ID '#{x}'"), [], {})
        class_type = prompt[x]["class_type"]
        class_ = nodes.NODE_CLASS_MAPPINGS.get(class_type)
        if class_ is None:
            return (False, _error("invalid_prompt",
                                  f"Cannot execute because node {class_type} does not exist.",
                                  f"Node ID '#{x}'"), [], {})
        if getattr(class_, "OUTPUT_NODE", False) is True and (
                partial_execution_list is None or x in partial_execution_list):
            outputs.add(x)
    if not outputs:
        return (False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {})

    good_outputs = set()
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    validated: dict[str, Validation] = {}
    for o in _execution_order(prompt, outputs):
        try:
            valid, reasons, _ = validate_inputs(prompt, o, validated)
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            valid = False
            reasons = [_error("exception_during_validation", "Exception when validating node",
                              str(ex), exception_type=full_type_name(typ or type(ex)),
                              traceback=traceback.format_tb(tb))]
            validated[o] = (False, reasons, o)
        if valid is True:
            good_outputs.add(o)
            continue
        logging.error(f"Failed to validate prompt for output {o}:")
        failed.append((o, reasons))
        for node_id, (node_valid, node_reasons, _) in validated.items():
            # Nodes downstream of a bad node are invalid without reasons: not reported.
            if node_valid is not True and node_reasons:
                entry = node_errors.setdefault(node_id, {
                    "errors": node_reasons, "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(o)
        logging.error("Output will be ignored")

    if not good_outputs:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
        return (False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                              details), [], node_errors)
    return (True, None, _execution_order(prompt, good_outputs), node_errors)


def _execution_order(prompt: Prompt, outputs: set[str]) -> list[str]:
    """Outputs with fewer ancestors first.

    ComfyUI returns a ``set`` as a list here, so its order changes with the hash seed; this
    fixed order reproduces the node order of every recorded trace (the cutout is saved before
    the generator starts).
    """
    def ancestors(node_id: str, seen: set[str]) -> set[str]:
        for value in prompt[node_id]["inputs"].values():
            if is_link(value) and value[0] not in seen:
                seen.add(value[0])
                ancestors(value[0], seen)
        return seen

    return sorted(outputs, key=lambda o: (len(ancestors(o, set())), int(o) if o.isdigit() else 0, o))


# --- queue and history ------------------------------------------------------------------

MAXIMUM_HISTORY_SIZE = 10000


class ExecutionStatus(NamedTuple):
    status_str: str
    completed: bool
    messages: list[tuple[str, dict[str, Any]]]


class PromptQueue:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.task_counter = 0
        self.queue: list[tuple[Any, ...]] = []
        self.currently_running: dict[int, tuple[Any, ...]] = {}
        self.history: dict[str, dict[str, Any]] = {}

    def put(self, item: tuple[Any, ...]) -> None:
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.not_empty.notify()

    def get(self, timeout: float | None = None) -> tuple[tuple[Any, ...], int] | None:
        with self.not_empty:
            while not self.queue:
                self.not_empty.wait(timeout=timeout)
                if timeout is not None and not self.queue:
                    return None
            item = heapq.heappop(self.queue)
            i = self.task_counter
            self.currently_running[i] = copy.deepcopy(item)
            self.task_counter += 1
            self.server.queue_updated()
            return item, i

    def task_done(self, item_id: int, history_result: dict[str, Any], status: ExecutionStatus) -> None:
        with self.mutex:
            prompt = self.currently_running.pop(item_id)
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))
            self.history[prompt[1]] = {
                "prompt": prompt, "outputs": {},
                "status": copy.deepcopy(status._asdict()),
                **history_result,
            }
            self.server.queue_updated()

    def get_current_queue(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with self.mutex:
            return list(self.currently_running.values()), copy.deepcopy(self.queue)

    def get_tasks_remaining(self) -> int:
        with self.mutex:
            return len(self.queue) + len(self.currently_running)

    def wipe_queue(self) -> None:
        with self.mutex:
            self.queue = []
            self.server.queue_updated()

    def delete_queue_item(self, prompt_id: str) -> bool:
        with self.mutex:
            for x, item in enumerate(self.queue):
                if item[1] == prompt_id:
                    self.queue.pop(x)
                    heapq.heapify(self.queue)
                    self.server.queue_updated()
                    return True
        return False

    def get_history(self, prompt_id: str | None = None, max_items: int | None = None,
                    offset: int = -1) -> dict[str, Any]:
        with self.mutex:
            if prompt_id is not None:
                if prompt_id in self.history:
                    return {prompt_id: copy.deepcopy(self.history[prompt_id])}
                return {}
            if offset < 0 and max_items is not None:
                offset = len(self.history) - max_items
            out = {}
            for i, key in enumerate(self.history):
                if i >= offset:
                    out[key] = self.history[key]
                    if max_items is not None and len(out) >= max_items:
                        break
            return copy.deepcopy(out)

    def wipe_history(self) -> None:
        with self.mutex:
            self.history = {}

    def delete_history_item(self, prompt_id: str) -> None:
        with self.mutex:
            self.history.pop(prompt_id, None)


# --- execution ----------------------------------------------------------------------------

class ClassicCache:
    """Values keyed by a node's input signature; only signatures of the current prompt survive."""

    def __init__(self) -> None:
        self.cache: dict[str, Any] = {}
        self.keys: dict[str, str] = {}

    def set_prompt(self, keys: dict[str, str]) -> None:
        self.keys = keys
        live = set(keys.values())
        self.cache = {k: v for k, v in self.cache.items() if k in live}

    def get(self, node_id: str) -> Any:
        return self.cache.get(self.keys.get(node_id, ""))

    def set(self, node_id: str, value: Any) -> None:
        self.cache[self.keys[node_id]] = value

    def all_node_ids(self) -> list[str]:
        return list(self.keys)


def _is_changed(prompt: Prompt, node_id: str) -> Any:
    node = prompt[node_id]
    class_def = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
    function = getattr(class_def, "IS_CHANGED", None)
    if function is None:
        return False
    constants = {k: v for k, v in node["inputs"].items() if not is_link(v)}
    try:
        return [function(**constants)]
    except Exception as e:
        logging.warning(f"WARNING: {e}")
        return f"unhashable-{uuid.uuid4()}"  # never equal: the node always runs again


def _signatures(prompt: Prompt) -> dict[str, str]:
    """Each node's cache key: its class, IS_CHANGED value and inputs, ancestors included."""
    changed = {node_id: _is_changed(prompt, node_id) for node_id in prompt}

    def ancestry(node_id: str, order: dict[str, int]) -> None:
        inputs = prompt[node_id]["inputs"]
        for key in sorted(inputs):
            if is_link(inputs[key]) and inputs[key][0] not in order:
                order[inputs[key][0]] = len(order)
                ancestry(inputs[key][0], order)

    def immediate(node_id: str, order: dict[str, int]) -> list[Any]:
        node = prompt[node_id]
        class_def = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        signature: list[Any] = [node["class_type"], changed[node_id]]
        hidden = class_def.INPUT_TYPES().get("hidden", {})
        if getattr(class_def, "NOT_IDEMPOTENT", False) or "UNIQUE_ID" in hidden.values():
            signature.append(node_id)
        for key in sorted(node["inputs"]):
            value = node["inputs"][key]
            if is_link(value):
                signature.append([key, ["ANCESTOR", order[value[0]], value[1]]])
            else:
                signature.append([key, value])
        return signature

    keys = {}
    for node_id in prompt:
        order: dict[str, int] = {}
        ancestry(node_id, order)
        parts = [immediate(node_id, order)] + [immediate(a, order) for a in order]
        keys[node_id] = json.dumps(parts, sort_keys=True, default=repr)
    return keys


class ExecutionList:
    """Topological dissolve of the graph with ComfyUI's pick order (ready output nodes first)."""

    def __init__(self, prompt: Prompt, output_cache: ClassicCache) -> None:
        self.prompt = prompt
        self.output_cache = output_cache
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[int, bool]]] = {}
        self.staged: str | None = None

    def is_cached(self, node_id: str) -> bool:
        return self.output_cache.get(node_id) is not None

    def add_node(self, node_unique_id: str) -> None:
        node_ids = [node_unique_id]
        links = []
        while node_ids:
            unique_id = node_ids.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            inputs = self.prompt[unique_id]["inputs"]
            for value in inputs.values():
                if is_link(value) and not self.is_cached(value[0]):
                    node_ids.append(value[0])
                    links.append((value[0], value[1], unique_id))
        for from_node_id, from_socket, to_node_id in links:
            self.add_strong_link(from_node_id, from_socket, to_node_id)

    def add_strong_link(self, from_node_id: str, from_socket: int, to_node_id: str) -> None:
        if self.is_cached(from_node_id):
            return
        self.add_node(from_node_id)
        if to_node_id not in self.blocking[from_node_id]:
            self.blocking[from_node_id][to_node_id] = {}
            self.block_count[to_node_id] += 1
        self.blocking[from_node_id][to_node_id][from_socket] = True

    def is_empty(self) -> bool:
        return not self.pending

    def stage_node_execution(self) -> str:
        available = [n for n in self.pending if self.block_count[n] == 0]
        self.staged = self._ux_friendly_pick(available)
        return self.staged

    def _is_output(self, node_id: str) -> bool:
        class_def = nodes.NODE_CLASS_MAPPINGS[self.prompt[node_id]["class_type"]]
        return getattr(class_def, "OUTPUT_NODE", False) is True

    def _ux_friendly_pick(self, available: list[str]) -> str:
        for node_id in available:
            if self._is_output(node_id):
                return node_id
        for node_id in available:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in available:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return available[0]

    def complete_node_execution(self) -> None:
        assert self.staged is not None
        del self.pending[self.staged]
        for blocked in self.blocking.pop(self.staged):
            self.block_count[blocked] -= 1
        self.staged = None


class ProgressRegistry:
    """Per-node progress of the running prompt; every change is a ``progress_state`` message."""

    def __init__(self, server: Any, prompt_id: str) -> None:
        self.server = server
        self.prompt_id = prompt_id
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        return self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})

    def _send(self) -> None:
        active = {
            node_id: {"value": s["value"], "max": s["max"], "state": s["state"], "node_id": node_id,
                      "prompt_id": self.prompt_id, "display_node_id": node_id,
                      "parent_node_id": None, "real_node_id": node_id}
            for node_id, s in self.nodes.items() if s["state"] != "pending"
        }
        self.server.send_sync("progress_state", {"prompt_id": self.prompt_id, "nodes": active},
                              self.server.client_id)

    def start(self, node_id: str) -> None:
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._send()

    def update(self, node_id: str, value: float, max_value: float) -> None:
        self._entry(node_id).update(state="running", value=value, max=max_value)
        self._send()

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._send()


def format_value(x: Any) -> Any:
    if x is None or isinstance(x, (int, float, bool, str)):
        return x
    if isinstance(x, dict):
        return x
    return str(x)


def get_input_data(inputs: dict[str, Any], class_def: Any, unique_id: str,
                   outputs: ClassicCache, prompt: Prompt, extra_data: dict[str, Any]) -> dict[str, Any]:
    valid_inputs = class_def.INPUT_TYPES()
    data: dict[str, Any] = {}
    for name, value in inputs.items():
        _, category, _ = get_input_info(class_def, name, valid_inputs)
        if is_link(value):
            cached = outputs.get(value[0])
            data[name] = None if cached is None or value[1] >= len(cached) else cached[value[1]]
        elif category is not None:
            data[name] = value
    for name, kind in valid_inputs.get("hidden", {}).items():
        hidden = {"PROMPT": prompt, "EXTRA_PNGINFO": extra_data.get("extra_pnginfo"),
                  "UNIQUE_ID": unique_id}
        if kind in hidden:
            data[name] = hidden[kind]
    return data


class ExecutionFailure(Exception):
    def __init__(self, details: dict[str, Any], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.details = details
        self.cause = cause


def raise_configured_failure(class_type: str) -> None:
    """The fault chosen with ``--standin-fail-*``, raised as the node itself would raise it."""
    options = standin_options.current
    if options.fail_kind == "oom":
        raise comfy.model_management.OutOfMemoryError(
            options.fail_message or
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
            "23.55 GiB of which 1.21 GiB is free. Of the allocated memory 20.98 GiB is allocated "
            "by PyTorch, and 1.02 GiB is reserved by PyTorch but unallocated.")
    raise RuntimeError(options.fail_message or f"{class_type} failed (stand-in fault)")


class PromptExecutor:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.outputs = ClassicCache()
        self.ui = ClassicCache()
        self.objects: dict[tuple[str, str], Any] = {}
        self.status_messages: list[tuple[str, dict[str, Any]]] = []
        self.success = True
        self.history_result: dict[str, Any] = {}

    def add_message(self, event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append((event, data))
        if self.server.client_id is not None or broadcast:
            self.server.send_sync(event, data, self.server.client_id)

    def execute(self, prompt: Prompt, prompt_id: str, extra_data: dict[str, Any],
                execute_outputs: list[str]) -> None:
        nodes.interrupt_processing(False)
        self.server.client_id = extra_data.get("client_id")
        self.status_messages = []
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
        self.progress = self.server.progress = ProgressRegistry(self.server, prompt_id)
        keys = _signatures(prompt)
        self.outputs.set_prompt(keys)
        self.ui.set_prompt(keys)
        cached_nodes = [node_id for node_id in prompt if self.outputs.get(node_id) is not None]
        self.add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id},
                         broadcast=False)
        executed: set[str] = set()
        current_outputs = self.outputs.all_node_ids()
        execution_list = ExecutionList(prompt, self.outputs)
        for node_id in execute_outputs:
            execution_list.add_node(node_id)
        self.success = True
        while not execution_list.is_empty():
            node_id = execution_list.stage_node_execution()
            try:
                self._execute_node(prompt, prompt_id, node_id, extra_data, executed)
            except ExecutionFailure as failure:
                self.success = False
                self._report_failure(prompt, prompt_id, failure, executed, current_outputs)
                break
            execution_list.complete_node_execution()
        else:
            self.add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
        ui_outputs, meta_outputs = {}, {}
        for node_id in self.ui.all_node_ids():
            ui_info = self.ui.get(node_id)
            if ui_info is not None:
                ui_outputs[node_id] = ui_info["output"]
                meta_outputs[node_id] = ui_info["meta"]
        self.history_result = {"outputs": ui_outputs, "meta": meta_outputs}
        self.server.last_node_id = None

    def _execute_node(self, prompt: Prompt, prompt_id: str, node_id: str,
                      extra_data: dict[str, Any], executed: set[str]) -> None:
        server = self.server
        class_type = prompt[node_id]["class_type"]
        class_def = nodes.NODE_CLASS_MAPPINGS[class_type]
        if self.outputs.get(node_id) is not None:
            if server.client_id is not None:
                cached_ui = self.ui.get(node_id) or {}
                server.send_sync("executed", {"node": node_id, "display_node": node_id,
                                              "output": cached_ui.get("output"),
                                              "prompt_id": prompt_id}, server.client_id)
            self.progress.finish(node_id)
            return
        input_data: dict[str, Any] | None = None
        try:
            self.progress.start(node_id)
            input_data = get_input_data(prompt[node_id]["inputs"], class_def, node_id,
                                        self.outputs, prompt, extra_data)
            if server.client_id is not None:
                server.last_node_id = node_id
                server.send_sync("executing", {"node": node_id, "display_node": node_id,
                                               "prompt_id": prompt_id}, server.client_id)
            obj = self.objects.get((node_id, class_type))
            if obj is None:
                obj = self.objects[(node_id, class_type)] = class_def()
            nodes.before_node_execution()
            if standin_options.current.should_fail(class_type, input_data):
                raise_configured_failure(class_type)
            result = getattr(obj, class_def.FUNCTION)(**input_data)
        except comfy.model_management.InterruptProcessingException as iex:
            logging.info("Processing interrupted")
            raise ExecutionFailure({"node_id": node_id}, iex) from iex
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            logging.error(f"!!! Exception during processing !!! {ex}")
            logging.error(traceback.format_exc())
            tips = ""
            if isinstance(ex, comfy.model_management.OOM_EXCEPTION):
                tips = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the "
                        "workflow worked before you might have accidentally set the batch_size "
                        "to a large number.")
                logging.error("Got an OOM, unloading all loaded models.")
            details = {
                "node_id": node_id,
                "exception_message": f"{ex}\n{tips}",
                "exception_type": full_type_name(typ or type(ex)),
                "traceback": traceback.format_tb(tb),
                "current_inputs": {name: [format_value(v)] for name, v in (input_data or {}).items()},
            }
            raise ExecutionFailure(details, ex) from ex

        if isinstance(result, dict):
            output_ui = result.get("ui") or {}
            output = tuple(result.get("result", ()))
        else:
            output_ui, output = {}, tuple(result)
        if output_ui:
            self.ui.set(node_id, {"meta": {"node_id": node_id, "display_node": node_id,
                                           "parent_node": None, "real_node_id": node_id},
                                  "output": output_ui})
            if server.client_id is not None:
                server.send_sync("executed", {"node": node_id, "display_node": node_id,
                                              "output": output_ui, "prompt_id": prompt_id},
                                 server.client_id)
        self.outputs.set(node_id, output)
        self.progress.finish(node_id)
        executed.add(node_id)

    def _report_failure(self, prompt: Prompt, prompt_id: str, failure: ExecutionFailure,
                        executed: set[str], current_outputs: list[str]) -> None:
        node_id = failure.details["node_id"]
        message: dict[str, Any] = {"prompt_id": prompt_id, "node_id": node_id,
                                   "node_type": prompt[node_id]["class_type"],
                                   "executed": list(executed)}
        if isinstance(failure.cause, comfy.model_management.InterruptProcessingException):
            self.add_message("execution_interrupted", message, broadcast=True)
            return
        message.update({key: failure.details[key] for key in
                        ("exception_message", "exception_type", "traceback", "current_inputs")})
        message["current_outputs"] = list(current_outputs)
        self.add_message("execution_error", message, broadcast=False)
