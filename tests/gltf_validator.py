"""Khronos glTF-Validator (npm ``gltf-validator``) on a GLB file, for tests.

``.ci/run`` installs it under ``<repo>/.ci-work/npm`` and exports ``NODE_PATH``; locally::

    npm install --prefix .ci-work/npm gltf-validator@2.0.0-dev.3.10

A missing ``node`` or validator fails the test that needs it: a GLB nobody validated must not pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NODE_PATH = REPO_ROOT / ".ci-work" / "npm" / "node_modules"

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
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: gltf-validator needs it (`.ci/run` installs nodejs)")
    node_path = os.environ.get("NODE_PATH") or str(DEFAULT_NODE_PATH)
    if not any((Path(p) / "gltf-validator").is_dir() for p in node_path.split(os.pathsep) if p):
        pytest.fail(f"gltf-validator is not installed under NODE_PATH={node_path}: run "
                    f"`npm install --prefix {REPO_ROOT / '.ci-work' / 'npm'} gltf-validator@2.0.0-dev.3.10`")
    result = subprocess.run(
        [node, "-e", _SCRIPT, str(path)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "NODE_PATH": node_path},
    )
    if result.returncode != 0:
        pytest.fail(f"gltf-validator could not run on {path}: {result.stderr.strip()}")
    return json.loads(result.stdout)
