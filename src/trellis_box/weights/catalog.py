"""The model catalog (``data/catalog.toml``), per-model source overrides, and where things go
under a ComfyUI root."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from trellis_box.errors import NotAComfyRoot, SourceConfigError

Placement = Literal["directory", "files"]

# Our bookkeeping under the root: the baked lock and the staging area. It sits inside models/ so
# that staging and targets share a filesystem and a rename is atomic.
STATE_DIR = "models/.trellis-box"


@dataclass(frozen=True)
class RepoPin:
    """Which repository a model's files come from, at which revision, on which endpoint."""

    repo: str
    revision: str
    endpoint: str | None = None  # None: HF_ENDPOINT, else huggingface.co


@dataclass(frozen=True)
class Model:
    name: str
    title: str
    repo: str
    revision: str
    target: str
    placement: Placement
    #: The ComfyUI node class that reads these files.
    loader: str
    gated: bool
    licence: str
    licence_url: str
    size: int
    files: tuple[str, ...]
    pin: RepoPin

    @property
    def overridden(self) -> bool:
        return self.pin.repo != self.repo or self.pin.endpoint is not None

    def target_dir(self, root: Path) -> Path:
        return root / self.target

    def file_target(self, root: Path, file: str) -> Path:
        return root / self.target / file


_KEYS = ("name", "title", "repo", "revision", "target", "placement", "loader", "gated", "licence",
         "licence_url", "size", "files")


def _model(table: dict[str, Any]) -> Model:
    missing = [key for key in _KEYS if key not in table]
    if missing:
        raise ValueError(f"catalog model {table.get('name', '?')}: no {', '.join(missing)}")
    placement = table["placement"]
    if placement not in ("directory", "files"):
        raise ValueError(f"catalog model {table['name']}: placement {placement!r}")
    return Model(
        name=table["name"],
        title=table["title"],
        repo=table["repo"],
        revision=table["revision"],
        target=table["target"],
        placement=placement,
        loader=str(table["loader"]),
        gated=bool(table["gated"]),
        licence=table["licence"],
        licence_url=table["licence_url"],
        size=int(table["size"]),
        files=tuple(table["files"]),
        pin=RepoPin(repo=table["repo"], revision=table["revision"]),
    )


def parse(text: str) -> tuple[Model, ...]:
    return tuple(_model(t) for t in tomllib.loads(text)["model"])


@cache
def load_catalog() -> tuple[Model, ...]:
    text = resources.files("trellis_box").joinpath("data/catalog.toml").read_text(encoding="utf-8")
    return parse(text)


_SOURCE_KEYS = {"repo", "revision", "endpoint"}


def apply_sources(models: tuple[Model, ...], config: Path | None) -> tuple[Model, ...]:
    """Models with the overrides of ``config`` applied.

    The file is TOML, one table per catalog model name::

        [dinov3]
        repo = "PIA-SPACE-LAB/dinov3-vitl-pretrain-lvd1689m"   # a mirror; same licence
        revision = "main"
        endpoint = "https://hf-mirror.example"                  # optional
    """
    if config is None:
        return models
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SourceConfigError(
            f"cannot read the source config {config}",
            detail=str(exc),
            fix="pass a TOML file with one table per overridden model, named as in `trellis-box models list`",
            path=config,
        ) from exc
    names = {m.name for m in models}
    for name, table in raw.items():
        unknown = set(table) - _SOURCE_KEYS if isinstance(table, dict) else {"<not a table>"}
        if name not in names or unknown:
            raise SourceConfigError(
                f"source config {config}: bad entry {name!r}",
                detail=(f"unknown model {name!r}" if name not in names
                        else f"unknown keys: {', '.join(sorted(unknown))}"),
                fix=f"use a model name ({', '.join(sorted(names))}) with keys repo, revision, endpoint",
                path=config,
            )
    out = []
    for m in models:
        table = raw.get(m.name, {})
        pin = RepoPin(
            repo=table.get("repo", m.repo),
            revision=table.get("revision", m.revision),
            endpoint=table.get("endpoint"),
        )
        out.append(replace(m, pin=pin))
    return tuple(out)


def comfy_root(path: Path) -> Path:
    """``path`` resolved, after checking it is a ComfyUI root (it holds ``main.py``)."""
    root = path.expanduser().resolve()
    if not (root / "main.py").is_file():
        seen = "does not exist" if not root.exists() else "has no main.py"
        hint = ""
        if root.name in ("models", "custom_nodes") and (root.parent / "main.py").is_file():
            hint = f" (it looks like the {root.name}/ folder of {root.parent})"
        found = _comfy_roots_near(root)
        raise NotAComfyRoot(
            f"not a ComfyUI root: {root}",
            detail=f"{root} {seen}{hint}; fetch and verify place files relative to ComfyUI's main.py.",
            fix=("pass the directory that holds ComfyUI's main.py: "
                 + (f"`comfy_root` {found[0]}" if found else
                    "`comfy_root` DIR (or TRELLIS_BOX_COMFY_ROOT); none was found in the current directory, "
                    "~/ComfyUI or /opt/comfyui. Without ComfyUI on this machine, run the command inside the "
                    "image, e.g. `docker compose exec comfyui-trellis2 trellis-box doctor`")),
            path=root,
        )
    return root


def _comfy_roots_near(failed: Path) -> list[Path]:
    """Real ComfyUI roots where people keep them, never the path that just failed."""
    places = [failed.parent, Path.cwd(), Path.cwd() / "ComfyUI", Path.home() / "ComfyUI", Path("/opt/comfyui")]
    return [p for p in dict.fromkeys(places) if p != failed and (p / "main.py").is_file()]


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def baked_lock_path(root: Path) -> Path:
    return state_dir(root) / "weights.lock.json"


def staging_dir(root: Path) -> Path:
    return state_dir(root) / "staging"


def fetch_record_path(root: Path) -> Path:
    """What the last fetch was run with (its local tree, lock and source overrides): verify's fix
    repeats it."""
    return state_dir(root) / "fetch.json"


def baked_sources_path(root: Path) -> Path:
    """The last fetch's per-model source overrides, as a file :func:`apply_sources` reads."""
    return state_dir(root) / "sources.toml"
