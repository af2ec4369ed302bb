"""deploy/aws-batch.yaml: cfn-lint (AWS's own CloudFormation linter, offline) passes, and the
template agrees with what `trellis-box batch submit` registers and what the README promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from trellis_box.cloud import awsbatch
from trellis_box.comfyui.workflow import WorkflowOptions

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "aws-batch.yaml"


def _cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    # The console script beside this interpreter (the package has no __main__).
    tool = Path(sys.executable).with_name("cfn-lint")
    return subprocess.run([str(tool) if tool.exists() else shutil.which("cfn-lint") or "cfn-lint",
                           str(path)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, problems = decode(str(TEMPLATE))
    assert not problems
    return dict(parsed)


def test_cfn_lint_passes_and_catches_a_broken_copy(tmp_path: Path) -> None:
    done = _cfn_lint(TEMPLATE)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text()
    broken.write_text(text.replace("MinvCpus: 0", "MinvCpus: none"))
    line = text[:text.index("MinvCpus: 0")].count("\n") + 1
    done = _cfn_lint(broken)
    assert done.returncode != 0 and "E3012 'none' is not of type 'integer'" in done.stdout
    assert f"broken.yaml:{line}:" in done.stdout


def test_the_fleet_scales_to_zero_on_gpu_instances(template: dict[str, Any]) -> None:
    resources = template["Resources"]["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert resources["MinvCpus"] == 0 and resources["DesiredvCpus"] == 0
    assert template["Parameters"]["InstanceTypes"]["Default"] == "g6e.xlarge"
    assert resources["Ec2Configuration"] == [{"ImageType": "ECS_AL2_NVIDIA"}]


def test_the_job_definition_is_the_one_submit_registers(template: dict[str, Any]) -> None:
    props = template["Resources"]["JobDefinition"]["Properties"]
    assert props["ContainerProperties"]["Command"] == awsbatch.CHILD_COMMAND
    assert props["RetryStrategy"]["Attempts"] == awsbatch.ATTEMPTS
    registered = awsbatch.container_resources("g6e.xlarge", WorkflowOptions(), auto_resolution=False)
    assert [{k.lower(): v for k, v in r.items()} for r in props["ContainerProperties"]["ResourceRequirements"]] \
        == registered


def test_the_job_role_reaches_the_two_buckets_only(template: dict[str, Any]) -> None:
    [policy] = template["Resources"]["JobRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    resources = [r for s in statements for r in ([s["Resource"]] if not isinstance(s["Resource"], list)
                                                 else s["Resource"])]
    subs = [r["Fn::Sub"] for r in resources]
    assert all("${InputBucket}" in s or "${OutputBucket}" in s for s in subs), subs
    assert not any(s.endswith(":::*") or "*:*" in s for s in subs)
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert [w["Resource"]["Fn::Sub"] for w in writes] == ["arn:${AWS::Partition}:s3:::${OutputBucket}/*"]
