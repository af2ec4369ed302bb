"""Load an editor-format workflow into LiteGraph, the ComfyUI editor's graph library, and save it.

npm ``@comfyorg/litegraph@0.17.2`` (its last release as a separate package; the ComfyUI frontend
carries the same code since). ``.ci/run`` installs it beside gltf-validator under
``<repo>/.ci-work/npm``; locally::

    npm install --prefix .ci-work/npm @comfyorg/litegraph@0.17.2

Node types are registered from ``/object_info`` the way the frontend does it: a widget for each
INT, FLOAT, STRING and BOOLEAN input (unless ``forceInput``) and each options list, a socket for
everything else, a "control after generate" widget after ``seed``, an upload button after an
``image_upload`` input. ``LGraph.configure`` then reads the file as the editor would, and
``serialize`` shows what the editor made of it. Missing node or package fails the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import components
from tests.components import require

PACKAGE = "@comfyorg/litegraph"

_SCRIPT = r"""
import fs from 'fs';
import { pathToFileURL } from 'url';
const [libPath, editorPath, infoPath] = process.argv.slice(1);
const { LGraph, LGraphNode, LiteGraph } = await import(pathToFileURL(libPath).href);
const editor = JSON.parse(fs.readFileSync(editorPath, 'utf8'));
const info = JSON.parse(fs.readFileSync(infoPath, 'utf8'));
const WIDGET = { INT: 'number', FLOAT: 'number', STRING: 'text', BOOLEAN: 'toggle' };
const noop = () => {};
for (const type of new Set(editor.nodes.map((n) => n.type))) {
  const def = info[type];
  class Node extends LGraphNode {
    constructor(title) {
      super(title ?? type);
      this.serialize_widgets = true;
      for (const section of ['required', 'optional']) {
        for (const name of def.input_order[section] ?? []) {
          const [kind, opts = {}] = def.input[section][name];
          if (Array.isArray(kind)) this.addWidget('combo', name, kind[0] ?? '', noop, { values: kind });
          else if (WIDGET[kind] && !opts.forceInput)
            this.addWidget(WIDGET[kind], name, opts.default ?? null, noop, {});
          else this.addInput(name, kind);
          if (kind === 'INT' && (opts.control_after_generate || name === 'seed' || name === 'noise_seed'))
            this.addWidget('combo', 'control_after_generate', 'fixed', noop,
                           { values: ['fixed', 'increment', 'decrement', 'randomize'] });
          if (opts.image_upload) this.addWidget('button', 'upload', 'image', noop);
        }
      }
      def.output.forEach((t, i) => this.addOutput(def.output_name[i], t));
    }
  }
  LiteGraph.registerNodeType(type, Node);
}
const graph = new LGraph();
graph.configure(editor);
process.stdout.write(JSON.stringify(graph.serialize()));
"""


def load_and_save(editor_path: Path, object_info: dict[str, Any],
                  tmp_path: Path) -> tuple[dict[str, Any], str]:
    """What LiteGraph saves after loading ``editor_path``, and what it printed on stderr."""
    require("litegraph")
    node = shutil.which("node")
    assert node is not None
    installed = components.npm_package(PACKAGE)
    assert installed is not None
    library = installed / "dist" / "litegraph.es.js"
    info_path = tmp_path / "object_info.json"
    info_path.write_text(json.dumps(object_info))
    result = subprocess.run(
        [node, "--input-type=module", "-e", _SCRIPT, str(library), str(editor_path), str(info_path)],
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"LiteGraph could not load {editor_path}: {result.stderr.strip()}")
    return json.loads(result.stdout), result.stderr
