"""The GPU containers file: the example loads, and every mistake names file, field and fix."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest

import trellis_box
from trellis_box.cli.app import main
from trellis_box.errors import GpuConfigError, UnknownContainerError, UsageError
from trellis_box.swap.config import (
    ContainerSpec,
    SwapSettings,
    config_path,
    default_lock_file,
    key,
    load_gpu_config,
    schema,
    template,
    text,
    write_template,
)

EXAMPLE = Path(trellis_box.__file__).parent / "data" / "gpu-containers.toml"

MINIMAL = """
[containers.comfyui-trellis2]
image = "comfyui-trellis2:latest"
ready_url = "http://127.0.0.1:8188/trellis-box/ready"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpu.toml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(GpuConfigError) as info:
        load_gpu_config(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_example_config_loads_with_both_containers() -> None:
    config = load_gpu_config(EXAMPLE)
    assert set(config.containers) == {"comfyui-trellis2", "comfyui-wan"}
    trellis = config.containers["comfyui-trellis2"]
    assert trellis.comfy_url == "http://127.0.0.1:8188"
    # Every ComfyUI worker's port, so the drain reads every queue.
    assert trellis.ports == ("8188:8188", "8189:8189", "8190:8190", "8191:8191")
    assert trellis.gpus == "all"
    assert trellis.ready_timeout == 1800
    assert config.containers["comfyui-wan"].ready_timeout == 900
    assert config.swap.lock_file == default_lock_file()


def test_defaults_fill_a_minimal_entry(tmp_path: Path) -> None:
    spec = load_gpu_config(write(tmp_path, MINIMAL)).containers["comfyui-trellis2"]
    assert spec.container_name == "comfyui-trellis2"
    assert spec.command is None
    assert spec.environment == {}
    assert spec.stop_timeout == 60


def test_digest_changes_with_what_the_container_is_created_from(tmp_path: Path) -> None:
    base = load_gpu_config(write(tmp_path, MINIMAL)).containers["comfyui-trellis2"]
    longer = load_gpu_config(write(tmp_path, MINIMAL + "ready_timeout = 5\n"))
    other_image = load_gpu_config(write(tmp_path, MINIMAL.replace(":latest", ":0.2.0")))
    assert longer.containers["comfyui-trellis2"].digest() == base.digest()
    assert other_image.containers["comfyui-trellis2"].digest() != base.digest()


def test_missing_file_says_where_it_looked_and_how_to_point_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(GpuConfigError) as info:
        load_gpu_config(tmp_path / "absent.toml")
    text = str(info.value)
    assert f"GPU containers file not found: {tmp_path / 'absent.toml'}" in text
    # The library names its parameters; the command line names its flags and commands.
    assert "(`config`) or set TRELLIS_BOX_GPU_CONFIG" in text and "--" not in text


def test_missing_file_on_the_command_line_names_the_flag_and_init_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(tmp_path / "absent.toml")]) == 2
    err = capsys.readouterr().err
    assert "trellis-box swap init-config PATH" in err
    assert "(--config) or set TRELLIS_BOX_GPU_CONFIG" in err
    assert "`" not in err


def test_config_path_prefers_option_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path(None) == Path("/etc/trellis-box/gpu-containers.toml")
    monkeypatch.setenv("TRELLIS_BOX_GPU_CONFIG", "/srv/gpu.toml")
    assert config_path(None) == Path("/srv/gpu.toml")
    assert config_path(Path("x.toml")) == Path("x.toml")


def test_bad_toml_points_at_the_line(tmp_path: Path) -> None:
    text = config_error(tmp_path, "[containers.a\nimage = 1\n")
    assert "is not valid TOML" in text
    assert "line 1" in text


@pytest.mark.parametrize(("extra", "field", "fact"), [
    ('imag = "x"\n', "containers.comfyui-trellis2.imag", "unknown key"),
    ('ports = ["http"]\n', "containers.comfyui-trellis2.ports[0]", "'http' is not a port mapping"),
    ('volumes = ["/srv/out"]\n', "containers.comfyui-trellis2.volumes[0]",
     "'/srv/out' is not a volume mapping"),
    ('gpus = "some"\n', "containers.comfyui-trellis2.gpus", "'some' is not a GPU request"),
    ("ready_timeout = -1\n", "containers.comfyui-trellis2.ready_timeout",
     "expected a number of seconds, more than 0; found -1"),
    ('stop_timeout = "10"\n', "containers.comfyui-trellis2.stop_timeout",
     "expected a number of seconds, 0 or more; found '10'"),
    ('container_name = "-bad"\n', "containers.comfyui-trellis2.container_name",
     "'-bad' is not a valid Docker container name"),
    ('network = "host"\nports = ["8188:8188"]\n', "containers.comfyui-trellis2.ports",
     'ports are not published with network = "host"'),
    ("environment = { A = [1] }\n", "containers.comfyui-trellis2.environment.A",
     "expected a string"),
])
def test_bad_field_is_named_with_the_fact_and_a_fix(tmp_path: Path, extra: str, field: str,
                                                    fact: str) -> None:
    text = config_error(tmp_path, MINIMAL + extra)
    assert f"invalid field {field} in" in text
    assert fact in text
    assert "fix: " in text


def test_missing_ready_url_is_named(tmp_path: Path) -> None:
    text = config_error(tmp_path, MINIMAL.replace(
        'ready_url = "http://127.0.0.1:8188/trellis-box/ready"\n', ""))
    assert "invalid field containers.comfyui-trellis2.ready_url" in text
    assert "missing" in text


def test_ready_url_must_be_http(tmp_path: Path) -> None:
    text = config_error(tmp_path, MINIMAL.replace("http://127.0.0.1:8188", "127.0.0.1:8188"))
    assert "is not an http(s) URL" in text


def test_two_entries_cannot_share_a_container_name(tmp_path: Path) -> None:
    text = config_error(tmp_path, MINIMAL + 'container_name = "gpu"\n'
                        + MINIMAL.replace("comfyui-trellis2]", "wan]") + 'container_name = "gpu"\n')
    assert "invalid field containers.wan.container_name" in text
    assert "'gpu' is also the container name of containers.comfyui-trellis2" in text


def test_no_containers_at_all(tmp_path: Path) -> None:
    text = config_error(tmp_path, "[swap]\nlock_timeout = 5\n")
    assert "invalid field containers" in text


def test_unknown_swap_setting(tmp_path: Path) -> None:
    text = config_error(tmp_path, "[swap]\ndrain = 5\n" + MINIMAL)
    assert "invalid field swap.drain" in text
    assert "drain_timeout" in text


def test_unknown_name_lists_the_configured_ones() -> None:
    config = load_gpu_config(EXAMPLE)
    with pytest.raises(UnknownContainerError) as info:
        config.container("comfyui-sdxl")
    text = str(info.value)
    assert "no GPU container named 'comfyui-sdxl'" in text
    assert "configured: comfyui-trellis2, comfyui-wan" in text
    assert info.value.exit_code == 2


def test_a_group_gets_its_own_default_lock(tmp_path: Path) -> None:
    config = load_gpu_config(write(tmp_path, '[swap]\ngroup = "gpu1"\n' + MINIMAL))
    assert config.swap.group == "gpu1"
    assert config.swap.lock_file == default_lock_file("gpu1")
    assert config.swap.lock_file != default_lock_file()
    text = config_error(tmp_path, '[swap]\ngroup = "two words"\n' + MINIMAL)
    assert "invalid field swap.group" in text


def test_settle_seconds_defaults_to_ten_and_swap_sets_it_for_every_container(
        tmp_path: Path) -> None:
    assert load_gpu_config(write(tmp_path, MINIMAL)).containers["comfyui-trellis2"] \
        .settle_seconds == 10
    config = load_gpu_config(write(tmp_path, "[swap]\nsettle_seconds = 0\n" + MINIMAL))
    assert config.containers["comfyui-trellis2"].settle_seconds == 0
    text = config_error(tmp_path, MINIMAL + "settle_seconds = -2\n")
    assert "invalid field containers.comfyui-trellis2.settle_seconds" in text


# ---- one schema: a key is declared once -------------------------------------------------------

@dataclass(frozen=True)
class WithShmSize(ContainerSpec):
    """The schema with one more key, declared the only way a key is declared."""

    shm_size: str = field(default="64m", metadata=key(
        "size of /dev/shm", text, created_from=True))


def test_a_new_container_key_is_parsed_defaulted_checked_and_digested_from_its_field(
        tmp_path: Path) -> None:
    given = load_gpu_config(write(tmp_path, MINIMAL + 'shm_size = "8g"\n'), WithShmSize)
    spec = given.containers["comfyui-trellis2"]
    assert isinstance(spec, WithShmSize) and spec.shm_size == "8g"

    default = load_gpu_config(write(tmp_path, MINIMAL), WithShmSize)
    assert default.containers["comfyui-trellis2"].shm_size == "64m"  # type: ignore[attr-defined]
    # Created from it: a changed value re-creates the container (and status reports drift).
    assert default.containers["comfyui-trellis2"].digest() != spec.digest()

    path = write(tmp_path, MINIMAL + "shm_size = 8\n")
    with pytest.raises(GpuConfigError) as info:
        load_gpu_config(path, WithShmSize)
    assert "invalid field containers.comfyui-trellis2.shm_size" in str(info.value)
    assert "expected a non-empty string, found 8" in str(info.value)

    # The plain schema does not know it, and says which keys it knows.
    unknown = config_error(tmp_path, MINIMAL + 'shm_size = "8g"\n')
    assert "invalid field containers.comfyui-trellis2.shm_size" in unknown
    assert "unknown key" in unknown and "settle_seconds" in unknown


def test_a_required_key_is_named_with_its_help_when_missing(tmp_path: Path) -> None:
    text = config_error(tmp_path, MINIMAL.replace('image = "comfyui-trellis2:latest"\n', ""))
    assert "invalid field containers.comfyui-trellis2.image" in text
    assert "fix: add it: the Docker image to run" in text


def test_the_digest_keeps_its_value_for_unchanged_entries(tmp_path: Path) -> None:
    """Containers created before the schema existed carry this digest: it must not change, or
    every stopped container would be re-created after an upgrade."""
    spec = load_gpu_config(write(tmp_path, MINIMAL)).containers["comfyui-trellis2"]
    assert spec.digest() == (
        "sha256:59d5494d383065d7ea3e1676b71ba2e75daad1f7ce309d863e72dd41ff76c129")


def test_the_template_documents_every_key_and_loads() -> None:
    content = template()
    documented = set()
    for line in content.splitlines():
        name = line.lstrip("# ").split("=", 1)[0].strip()
        if "=" in line and name.isidentifier():
            documented.add(name)
    declared = {f.name for f in schema(ContainerSpec)} | {f.name for f in schema(SwapSettings)}
    assert declared - documented == set()
    assert set(tomllib.loads(content)["containers"]) == {"comfyui-trellis2", "comfyui-wan"}
    assert {f.name for f in fields(ContainerSpec)} - {f.name for f in schema(ContainerSpec)} \
        == {"name"}


def test_write_template_writes_the_package_copy_and_never_overwrites_unasked(
        tmp_path: Path) -> None:
    written = write_template(tmp_path / "etc" / "gpu-containers.toml")
    assert written.read_text() == template() == EXAMPLE.read_text()
    written.write_text("# mine\n")
    with pytest.raises(UsageError) as info:
        write_template(written)
    assert f"{written} exists already" in str(info.value)
    assert written.read_text() == "# mine\n"
    assert write_template(tmp_path / "etc", overwrite=True) == written
    assert written.read_text() == template()


def test_init_config_command_writes_it_and_refuses_without_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "gpu-containers.toml"
    assert main(["swap", "init-config", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    assert load_gpu_config(target).containers.keys() == {"comfyui-trellis2", "comfyui-wan"}
    assert main(["swap", "init-config", str(target)]) == 2
    assert "fix: choose another path, or allow --force to replace it" in capsys.readouterr().err
    assert main(["swap", "init-config", str(target), "--force", "--json"]) == 0
    assert f'"written": "{target}"' in capsys.readouterr().out
