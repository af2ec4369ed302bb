"""Every error a user can meet: one tree under :class:`TrellisBoxError`.

Each error keeps its facts as attributes and renders in one shape::

    error: <what failed, naming the object>
      <observed fact>
      fix: <command or setting>
      note: <optional>

Never put a token in any field. Subclasses set ``reference`` (kebab-case, stable, shown with
``--json``) and ``exit_code``.
"""

from __future__ import annotations

from typing import Any


class TrellisBoxError(Exception):
    reference = "trellis-box-error"
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        fix: str | None = None,
        note: str | None = None,
        **facts: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.fix = fix
        self.note = note
        self.facts = facts

    def __str__(self) -> str:
        lines = [self.message]
        if self.detail:
            lines += [f"  {line}" for line in self.detail.splitlines()]
        if self.fix:
            first, *rest = self.fix.splitlines()
            lines.append(f"  fix: {first}")
            lines += [f"       {line}" for line in rest]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": self.reference,
            "message": self.message,
            "detail": self.detail,
            "fix": self.fix,
            "note": self.note,
            **{k: (str(v) if not isinstance(v, (int, float, bool, type(None), list, dict)) else v)
               for k, v in self.facts.items()},
        }


class UsageError(TrellisBoxError):
    """Bad arguments or configuration given by the user."""

    reference = "usage"
    exit_code = 2


class ConfigError(TrellisBoxError):
    """A setting (environment variable, config file field) is invalid."""

    reference = "config"
    exit_code = 2


# --- models: catalog, hub, fetch, lock, verify ---

# --- comfyui: workflow, images, client, batch ---

class WorkflowInvalidError(UsageError):
    """The graph breaks the recorded node schemas; nothing was sent to ComfyUI.

    Example::

        error: workflow does not match the node schemas: 1 problem; nothing was sent to ComfyUI
          prompt.6.inputs.seed: -1 is below the minimum 0 (rule: min)
            fix: use a seed between 0 and 2147483647 (--seed)
          fix: correct each input named above
    """

    reference = "workflow-invalid"


class ResolutionUnsupportedError(UsageError):
    """The GPU cannot hold the requested resolution (or the resolution is unknown)."""

    reference = "resolution-unsupported"


class ImageInputError(TrellisBoxError):
    """One input image cannot be used; names the file, what is wrong and the fix."""

    reference = "image-invalid"


class GlbInvalidError(TrellisBoxError):
    """A file that should be a GLB is not one, or is truncated."""

    reference = "glb-invalid"


# --- serve: preflight, supervision, readiness ---

# --- swap and publish ---
