"""Khronos glTF-Validator (npm ``gltf-validator``) on a GLB file, for tests.

``.ci/run`` installs it under ``<repo>/.ci-work/npm`` and exports ``NODE_PATH``; locally::

    npm install --prefix .ci-work/npm gltf-validator@2.0.0-dev.3.10

A missing ``node`` or validator skips the test that needs it (fails it under CI: ``tests/components.py``):
a GLB nobody validated never passes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import components
from tests.components import require

# Reads the file named in argv, validates its bytes, prints the report as JSON.
_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const validator = require('gltf-validator');
const file = process.argv[1];
validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
  uri: path.basename(file),
  maxIssues: 100,
  externalResourceFunction: () => Promise.reject(new Error('external resources are not allowed')),
}).then(
  (report) => process.stdout.write(JSON.stringify(report)),
  (error) => { process.stderr.write(String(error)); process.exit(2); },
);
"""


def validate_glb(path: Path) -> dict[str, Any]:
    """The validator's report for ``path`` (``report["issues"]["numErrors"]`` etc.)."""
    require("gltf-validator")
    node = shutil.which("node")
    assert node is not None
    node_path = os.pathsep.join(map(str, components.node_path()))
    result = subprocess.run(
        [node, "-e", _SCRIPT, str(path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "NODE_PATH": node_path},
    )
    if result.returncode != 0:
        pytest.fail(f"gltf-validator could not run on {path}: {result.stderr.strip()}")
    return json.loads(result.stdout)
