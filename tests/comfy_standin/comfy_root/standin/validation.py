"""Checking a submitted prompt before it is queued, with ComfyUI 0.3.64's error shapes.

Clients see every text here (in the ``POST /prompt`` answer), so types, messages and details
are the server's, word for word. A prompt is accepted when at least one output node validates;
the other outputs' problems are still reported in ``node_errors`` (recorded scenario 03).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import traceback
from typing import Any

from standin import registry
from standin.graph import Prompt, class_of, is_link, outputs_in_run_order

log = logging.getLogger("standin.validation")

Problem = dict[str, Any]

# Widget types whose values the server coerces before range checks (and writes back into the
# prompt, so the queued prompt and /history carry the coerced value).
_COERCE = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
# Longer option lists (scanned model folders) are not echoed back in the error.
_ECHOED_OPTIONS = 20


def problem(kind: str, message: str, details: str, **extra_info: Any) -> Problem:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def qualified_name(cls: type) -> str:
    """How ComfyUI names exception types: ``RuntimeError``, ``torch.OutOfMemoryError``."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclasses.dataclass
class Verdict:
    accepted: bool
    error: Problem | None
    outputs: list[str]  # output nodes to run, in run order
    node_errors: dict[str, Any]


@dataclasses.dataclass
class _NodeResult:
    ok: bool
    problems: list[Problem]


def _types_compatible(produced: Any, wanted: Any) -> bool:
    if produced == wanted:
        return True
    if not (isinstance(produced, str) and isinstance(wanted, str)):
        return False
    # "IMAGE,MASK" style unions match when they share a member.
    return bool({t.strip() for t in produced.split(",")} & {t.strip() for t in wanted.split(",")})


class _Checker:
    """Validates nodes on demand, each once, following links upstream."""

    def __init__(self, prompt: Prompt) -> None:
        self.prompt = prompt
        self.results: dict[str, _NodeResult] = {}

    def check(self, node_id: str) -> _NodeResult:
        if node_id not in self.results:
            self.results[node_id] = self._check_node(node_id)
        return self.results[node_id]

    def _check_node(self, node_id: str) -> _NodeResult:
        node_class = class_of(self.prompt, node_id)
        spec = registry.inputs_of(node_class)
        given = self.prompt[node_id]["inputs"]
        custom_check = getattr(node_class, "VALIDATE_INPUTS", None)
        custom_args = self._parameter_names(custom_check)
        problems: list[Problem] = []
        upstream_ok = True
        for section in ("required", "optional"):
            for name, declared in spec.get(section, {}).items():
                if name not in given:
                    if section == "required":
                        problems.append(problem("required_input_missing",
                                                "Required input is missing", name, input_name=name))
                    continue
                wanted, options = declared[0], (declared[1] if len(declared) > 1 else {})
                if isinstance(given[name], list):
                    found, linked_ok = self._check_link(name, given[name], wanted, options)
                    problems += found
                    upstream_ok = upstream_ok and linked_ok
                else:
                    problems += self._check_constant(given, name, wanted, options,
                                                     skip_ranges=name in custom_args)
        if custom_check is not None:
            problems += self._run_custom_check(custom_check, custom_args, given)
        return _NodeResult(ok=upstream_ok and not problems, problems=problems)

    @staticmethod
    def _parameter_names(function: Any) -> list[str]:
        if function is None:
            return []
        code = function.__code__
        return list(code.co_varnames[1:code.co_argcount])  # after cls

    def _check_link(self, name: str, link: list[Any], wanted: Any, options: dict[str, Any]
                    ) -> tuple[list[Problem], bool]:
        config = [wanted, options]
        if len(link) != 2:
            return [problem("bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name, input_name=name, input_config=config, received_value=link)], True
        source, slot = link
        produced = class_of(self.prompt, source).RETURN_TYPES[slot]
        if not _types_compatible(produced, wanted):
            return [problem("return_type_mismatch", "Return type mismatch between linked nodes",
                            f"{name}, received_type({produced}) mismatch input_type({wanted})",
                            input_name=name, input_config=config, received_type=produced,
                            linked_node=link)], True
        try:
            return [], self.check(source).ok
        except Exception as e:
            # The failure belongs to the source node; this node is only invalid through it.
            self.results[source] = _NodeResult(False, [problem(
                "exception_during_inner_validation", "Exception when validating inner node",
                str(e), input_name=name, input_config=config, exception_message=str(e),
                exception_type=qualified_name(type(e)),
                traceback=traceback.format_tb(sys.exc_info()[2]), linked_node=link)])
            return [], False

    @staticmethod
    def _check_constant(given: dict[str, Any], name: str, wanted: Any, options: dict[str, Any],
                        *, skip_ranges: bool) -> list[Problem]:
        config = [wanted, options]
        value = given[name]
        try:
            if isinstance(value, dict) and "__value__" in value:
                value = given[name] = value["__value__"]
            coerce = _COERCE.get(wanted) if isinstance(wanted, str) else None
            if coerce is not None:
                value = given[name] = coerce(value)
        except Exception as e:
            return [problem("invalid_input_type",
                            f"Failed to convert an input value to a {wanted} value",
                            f"{name}, {value}, {e}", input_name=name, input_config=config,
                            received_value=value, exception_message=str(e))]
        if skip_ranges:  # the node's VALIDATE_INPUTS judges this input itself
            return []
        if "min" in options and value < options["min"]:
            return [problem("value_smaller_than_min",
                            f"Value {value} smaller than min of {options['min']}", name,
                            input_name=name, input_config=config, received_value=value)]
        if "max" in options and value > options["max"]:
            return [problem("value_bigger_than_max",
                            f"Value {value} bigger than max of {options['max']}", name,
                            input_name=name, input_config=config, received_value=value)]
        if isinstance(wanted, list) and value not in wanted:
            long_list = len(wanted) > _ECHOED_OPTIONS
            shown = f"(list of length {len(wanted)})" if long_list else str(wanted)
            return [problem("value_not_in_list", "Value not in list",
                            f"{name}: '{value}' not in {shown}", input_name=name,
                            input_config=None if long_list else config, received_value=value)]
        return []

    @staticmethod
    def _run_custom_check(custom_check: Any, names: list[str], given: dict[str, Any]
                          ) -> list[Problem]:
        # Links are not resolved before execution: the check sees None for a linked input.
        arguments = {n: None if is_link(given[n]) else given[n] for n in names if n in given}
        verdict = custom_check(**arguments)
        if verdict is True:
            return []
        return [problem("custom_validation_failed", "Custom validation failed for node",
                        name if verdict is False else f"{name} - {verdict}", input_name=name)
                for name in arguments]


def _unknown_node(prompt: Prompt) -> Problem | None:
    for node_id, node in prompt.items():
        if "class_type" not in node:
            return problem("invalid_prompt",
                           "Cannot execute because a node is missing the class_type property.",
                           f"Node ID '#{node_id}'")
        if node["class_type"] not in registry.NODE_CLASSES:
            return problem("invalid_prompt",
                           f"Cannot execute because node {node['class_type']} does not exist.",
                           f"Node ID '#{node_id}'")
    return None


def validate(prompt: Prompt, only_outputs: list[str] | None = None) -> Verdict:
    """Judge ``prompt``; ``only_outputs`` is the request's ``partial_execution_targets``."""
    unknown = _unknown_node(prompt)
    if unknown is not None:
        return Verdict(False, unknown, [], {})
    outputs = {node_id for node_id in prompt
               if registry.is_output(class_of(prompt, node_id))
               and (only_outputs is None or node_id in only_outputs)}
    if not outputs:
        return Verdict(False, problem("prompt_no_outputs", "Prompt has no outputs", ""), [], {})

    checker = _Checker(prompt)
    good: set[str] = set()
    failed: list[Problem] = []
    node_errors: dict[str, Any] = {}
    for output in outputs_in_run_order(prompt, outputs):
        try:
            result = checker.check(output)
        except Exception as e:
            result = checker.results[output] = _NodeResult(False, [problem(
                "exception_during_validation", "Exception when validating node", str(e),
                exception_type=qualified_name(type(e)),
                traceback=traceback.format_tb(sys.exc_info()[2]))])
        if result.ok:
            good.add(output)
            continue
        log.error("output %s of the prompt is invalid and will not run: %s", output,
                  result.problems)
        failed += result.problems
        # As ComfyUI does: every node with its own problems found so far lists this output
        # (nodes invalid only through a bad input have no problems and are not listed).
        for node_id, seen in checker.results.items():
            if not seen.ok and seen.problems:
                entry = node_errors.setdefault(node_id, {
                    "errors": seen.problems, "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(output)

    if not good:
        details = "\n".join(f"{p['message']}: {p['details']}" for p in failed)
        return Verdict(False, problem("prompt_outputs_failed_validation",
                                      "Prompt outputs failed validation", details), [], node_errors)
    return Verdict(True, None, outputs_in_run_order(prompt, good), node_errors)
