"""Every error a user can meet: one tree under :class:`TrellisBoxError`.

Each error keeps its facts as attributes and renders in one shape::

    error: <what failed, naming the object>
      <observed fact>
      fix: <command or setting>
      note: <optional>

Texts name a parameter in backticks (`comfy_root`); the command line spells it as the flag the
user typed (``cli/_flags.py``). Never put a token in any field. Subclasses set ``reference``
(kebab-case, stable, in :meth:`TrellisBoxError.to_dict`) and ``exit_code``.
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
class NotAComfyRoot(UsageError):
    """``comfy_root`` does not point at a ComfyUI checkout."""

    reference = "not-a-comfy-root"


class SourceConfigError(ConfigError):
    """The per-model source override file is unreadable or names something unknown."""

    reference = "source-config"


class HubTokenMissing(TrellisBoxError):
    """A gated model needs a token and none was given."""

    reference = "hf-token-missing"


class GatedAccessDenied(TrellisBoxError):
    """The token was refused for a gated repository (403 ``GatedRepo``)."""

    reference = "gated-access-denied"


class HubTokenInvalid(TrellisBoxError):
    """The Hub does not know the token at all (401 "Invalid credentials"): expired, revoked, mistyped."""

    reference = "hf-token-invalid"


class HubRepoNotFound(TrellisBoxError):
    reference = "hf-repo-not-found"


class HubRevisionNotFound(TrellisBoxError):
    reference = "hf-revision-not-found"


class HubFilesMissing(TrellisBoxError):
    """Files the nodes need are not in the repository at the resolved commit."""

    reference = "hf-files-missing"


class HubUnavailable(TrellisBoxError):
    """The Hub (or the mirror in ``HF_ENDPOINT``) could not be reached or answered an error."""

    reference = "hf-unavailable"


class HubTooSlow(HubUnavailable):
    """The Hub accepted the connection but sent nothing within the read timeout, after retries."""

    reference = "hf-too-slow"


class LocalSourceMissing(TrellisBoxError):
    """The air-gapped local tree (``from_dir``) lacks files the catalog needs."""

    reference = "local-source-missing"


class NotEnoughDisk(TrellisBoxError):
    reference = "not-enough-disk"


class NotWritable(TrellisBoxError):
    """A place fetch must write to (a model's directory, the state directory, the lock) is not
    writable by this user: found before anything is downloaded."""

    reference = "fetch-not-writable"


class FetchInProgress(TrellisBoxError):
    reference = "fetch-in-progress"


class DownloadIncomplete(TrellisBoxError):
    """A download ended with fewer (or more) bytes than the Hub announced."""

    reference = "download-incomplete"


class DownloadCut(DownloadIncomplete):
    """A download stopped mid-file (connection lost, or no byte within the read timeout): the
    bytes received are kept and a retry resumes from them."""

    reference = "download-cut"


class ChecksumMismatch(TrellisBoxError):
    """A file's size or sha256 differs from the lock."""

    reference = "checksum-mismatch"


class LockInvalid(TrellisBoxError):
    reference = "lock-invalid"


class LockMissing(TrellisBoxError):
    """A full verify needs checksums and no lock was found."""

    reference = "lock-missing"


class WeightsNotVerified(TrellisBoxError):
    """Weights under a ComfyUI root are missing, damaged or mixed with partial downloads."""

    reference = "weights-not-verified"


# --- comfyui: workflow, images, client, batch ---

class WorkflowInvalidError(UsageError):
    """The graph breaks the recorded node schemas; nothing was sent to ComfyUI.

    Example::

        error: workflow does not match the node schemas: 1 problem; nothing was sent to ComfyUI
          prompt.6.inputs.seed: -1 is below the minimum 0 (rule: min)
            fix: use an integer between 0 and 2147483647 (parameter `seed`)
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


# client and batch: facts from ComfyUI's answers, never its raw JSON


class ComfyUnreachableError(TrellisBoxError, ConnectionError):
    """No usable answer from the ComfyUI server (refused, reset, timed out)."""

    reference = "comfyui-unreachable"


class ComfyResponseError(TrellisBoxError):
    """ComfyUI answered with a status or body this client cannot use."""

    reference = "comfyui-response"


class PromptRejectedError(TrellisBoxError):
    """ComfyUI refused the whole prompt (400 ``invalid_prompt``); nothing ran."""

    reference = "prompt-rejected"


class PromptNodeError(PromptRejectedError):
    """ComfyUI found a bad node input: 400 ``prompt_outputs_failed_validation``, or 200 with a
    non-empty ``node_errors`` (it then runs the rest of the graph; the GLB never comes)."""

    reference = "prompt-node-error"


class ExecutionFailedError(TrellisBoxError):
    """A node raised while the prompt ran (``execution_error``)."""

    reference = "execution-failed"


class OutOfMemoryError(ExecutionFailedError):
    """The GPU ran out of memory; the text names the resolution to try instead."""

    reference = "out-of-memory"


class NoObjectFoundError(ExecutionFailedError):
    """Background removal left nothing of the input: the cutout is empty, and the pinned nodes
    fail on it with texts that blame the wrong node (``SaveImage``: "cannot write empty image")."""

    reference = "no-object-found"


class JobInterruptedError(TrellisBoxError):
    """The prompt was interrupted on the server (``execution_interrupted``)."""

    reference = "job-interrupted"


class JobTimeoutError(TrellisBoxError, TimeoutError):
    """A prompt ran longer than its timeout; the client interrupted it."""

    reference = "job-timeout"


class PromptLostError(TrellisBoxError):
    """A queued prompt is neither in the queue nor in the history: the server restarted."""

    reference = "prompt-lost"


class PromptWithdrawnError(TrellisBoxError):
    """A queued prompt was taken back before it started (:meth:`ComfyClient.withdraw`): it will
    not run there. The batch engine withdraws to move a prompt to a worker gone idle."""

    reference = "prompt-withdrawn"


class OutputMissingError(TrellisBoxError):
    """The prompt finished but ``/history`` names no file for an expected output."""

    reference = "output-missing"


class OutputGoneError(TrellisBoxError):
    """``/history`` names an output file but ``/view`` answers 404: it was deleted from the
    server's output folder (ComfyUI answers an identical prompt from its cache with the old name).

    Example::

        error: ComfyUI at http://127.0.0.1:8188 no longer has 3D/Trellis2-1a2b3c4d_00001_.glb,
        the output file /history names
          GET /view answered 404: the file was deleted from the server's output/ folder after
          the prompt that wrote it ran (ComfyUI answers a prompt it has run before from its
          cache, naming the old file again).
          fix: leave the server's output/ folder alone while jobs run, then run the same command
               again: trellis-box exports an output deleted before its job once more
    """

    reference = "output-gone"


class OutputWriteError(TrellisBoxError):
    """A result could not be written under the output directory (disk full, permissions)."""

    reference = "output-write"


# --- serve: preflight, supervision, readiness ---

class GpuUnavailableError(TrellisBoxError):
    """No CUDA GPU is visible: no ``nvidia-smi``, no driver, or no device; ComfyUI was not started.

    Example::

        error: no CUDA GPU visible: nvidia-smi is not on PATH; ComfyUI was not started
          The container was started without GPU access ...
          fix: start it with `docker run --gpus all ...` ...
    """

    reference = "gpu-unavailable"


class GpuUnsupportedError(TrellisBoxError):
    """A GPU is visible but this image cannot use it: too little memory, or an architecture the
    compiled extensions carry no code for."""

    reference = "gpu-unsupported"


class NodeImportError(TrellisBoxError):
    """A custom node pack raised on import (ComfyUI would log ``IMPORT FAILED`` and carry on)."""

    reference = "node-import-failed"


class RuntimePackageError(TrellisBoxError):
    """A package ComfyUI's interpreter holds would fail the first job though every import check
    passes: a version outside the range the node packs work with, or a module lacking names."""

    reference = "runtime-package"


class DirectoryNotWritableError(TrellisBoxError):
    """A directory ComfyUI or its kernels write to is not writable by this process's user."""

    reference = "directory-not-writable"


class PortInUseError(TrellisBoxError):
    """ComfyUI's port is taken: serve would otherwise check and warm up someone else's server."""

    reference = "port-in-use"


class ComfyExitedError(TrellisBoxError):
    """ComfyUI exited before it was ready; the exit code is ComfyUI's own."""

    reference = "comfyui-exited"

    def __init__(self, message: str, *, status: int, **kwargs: object) -> None:
        super().__init__(message, status=status, **kwargs)  # type: ignore[arg-type]
        # serve exits with ComfyUI's status; a clean 0 before "ready" is still a failure.
        self.exit_code = status if status else 1


class ComfyStartTimeoutError(TrellisBoxError, TimeoutError):
    """ComfyUI did not answer on its port within the start timeout."""

    reference = "comfyui-start-timeout"


class NodeClassesMissingError(TrellisBoxError):
    """ComfyUI runs but lacks node classes the workflow needs (a pack failed or is absent)."""

    reference = "node-classes-missing"


class WarmupFailedError(TrellisBoxError):
    """The warm-up job failed, so the server never reports ready."""

    reference = "warmup-failed"


# --- swap and publish ---

class GpuConfigError(ConfigError):
    """The GPU containers file (``swap``/``status``) is missing, unreadable or has a bad field."""

    reference = "gpu-config"


class UnknownContainerError(UsageError):
    """``swap NAME`` names no container of the GPU containers file."""

    reference = "gpu-container-unknown"


class DockerEngineError(TrellisBoxError):
    """The Docker engine is unreachable or refused a request."""

    reference = "docker-engine"


class SwapLockedError(TrellisBoxError):
    """Another swap holds the swap lock and did not release it in time."""

    reference = "swap-locked"


class SwapRefusedError(TrellisBoxError):
    """The swap cannot start safely; nothing was stopped."""

    reference = "swap-refused"


class DrainTimeoutError(SwapRefusedError, TimeoutError):
    """The running container's ComfyUI queue did not empty in time; nothing was stopped."""

    reference = "swap-drain-timeout"


class SwapFailedError(TrellisBoxError):
    """The target did not become ready; the text says why, its last log lines and the rollback."""

    reference = "swap-failed"


# publish


class PublishImageError(UsageError):
    """The local image to publish is missing or lacks a label a tag is made from."""

    reference = "publish-image"


class AwsCredentialsMissingError(TrellisBoxError):
    """boto3 found no AWS credentials or region, or could not load the credentials (ECR, S3, AWS Batch)."""

    reference = "aws-credentials-missing"


class EcrRepositoryMissingError(TrellisBoxError):
    """The ECR repository does not exist and ``create_repository`` was not asked for."""

    reference = "ecr-repository-missing"


class EcrRequestError(TrellisBoxError):
    """ECR refused a request (access denied, throttled, ...)."""

    reference = "ecr-request"


class RegistryLoginRefusedError(TrellisBoxError):
    """The registry refused the ECR token at login."""

    reference = "registry-login-refused"


class RegistryUnreachableError(TrellisBoxError):
    """The Docker engine could not reach the registry at all (DNS, connection, TLS)."""

    reference = "registry-unreachable"


class PushFailedError(TrellisBoxError):
    """The registry or the engine stopped the push."""

    reference = "push-failed"


# --- image: build-time checks ---

class ExtensionNotFoundError(TrellisBoxError):
    """A CUDA extension package the GPU architecture check must read is not installed."""

    reference = "extension-not-found"


class UnreadableExtensionError(TrellisBoxError):
    """A wheel or ``.so`` whose ELF or fatbin structure cannot be read."""

    reference = "extension-unreadable"


class MissingGpuCodeError(TrellisBoxError):
    """A compiled extension carries neither cubin nor PTX that runs on a target GPU architecture.

    Example::

        error: 1 compiled extension(s) lack GPU code for sm_80: wheel flex_gemm 0.0.1
          wheel flex_gemm 0.0.1: flex_gemm/_C.so
            has sm_86 cubin, compute_86 PTX; cannot run on sm_80
    """

    reference = "gpu-arch-missing"


class ExtensionBuildError(TrellisBoxError):
    """Building the CUDA extensions from their pinned sources failed (sources, compiler, strip)."""

    reference = "extension-build-failed"


# --- report: report.html, thumbnails ---
class ReportInputError(UsageError):
    """The folder given to ``report`` holds no per-input reports of a batch."""

    reference = "report-no-inputs"


class ThumbnailsUnavailableError(TrellisBoxError):
    """The optional thumbnail renderer is not installed or cannot render on this machine."""

    reference = "thumbnails-unavailable"


# --- storage: folders and S3 ---


class StorageMissingError(UsageError):
    """An S3 location names no bucket, or a bucket that does not exist."""

    reference = "storage-missing"


class StorageRequestError(TrellisBoxError):
    """S3 refused a request or could not be reached."""

    reference = "storage-request"


# --- cloud: AWS Batch ---


class BatchQueueMissingError(UsageError):
    """The AWS Batch job queue named does not exist (in this account and region)."""

    reference = "batch-queue-missing"


class BatchJobMissingError(UsageError):
    """No AWS Batch job has the id given, or it was not submitted by ``trellis-box batch``."""

    reference = "batch-job-missing"


class BatchRequestError(TrellisBoxError):
    """AWS Batch refused a request or could not be reached."""

    reference = "batch-request"


class ShardError(TrellisBoxError):
    """An array child cannot find its shard (manifest unreadable, index out of range)."""

    reference = "shard"
