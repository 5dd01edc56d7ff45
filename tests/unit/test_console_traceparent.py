"""The console page's traceparent generator (traceparent.js), run with Node.

Node is the system `node` (Debian's nodejs package); the module is a plain ES module,
so Node imports the very file the browser loads.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "labstream/api/console/traceparent.js"
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def run_node(script: str) -> object:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the console's JavaScript tests: apt-get install -y nodejs")
    completed = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30,
        check=False)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_new_trace_context_is_version_00_sampled_and_random():
    found = run_node(f"""
        import {{ newTraceContext, traceIdOf }} from {json.dumps(MODULE.as_uri())};
        const made = Array.from({{ length: 200 }}, () => newTraceContext());
        console.log(JSON.stringify(made.map((c) => [c.traceparent, c.traceId, c.spanId,
                                                   traceIdOf(c.traceparent)])));
    """)
    assert isinstance(found, list) and len(found) == 200
    for traceparent, trace_id, span_id, parsed in found:
        assert TRACEPARENT.match(traceparent), traceparent
        assert traceparent == f"00-{trace_id}-{span_id}-01"
        assert parsed == trace_id
    assert len({item[1] for item in found}) == 200  # no two traces alike


def test_all_zero_ids_are_drawn_again():
    found = run_node(f"""
        import {{ newTraceContext }} from {json.dumps(MODULE.as_uri())};
        let calls = 0;
        // the first two draws are all zeros (invalid ids), then 0x01 bytes
        const random = (bytes) => {{ calls += 1; bytes.fill(calls <= 2 ? 0 : 1); }};
        console.log(JSON.stringify(newTraceContext(random)));
    """)
    assert found == {"traceId": "01" * 16, "spanId": "01" * 8,
                     "traceparent": f"00-{'01' * 16}-{'01' * 8}-01"}


def test_trace_id_of_refuses_what_is_not_a_traceparent():
    found = run_node(f"""
        import {{ traceIdOf }} from {json.dumps(MODULE.as_uri())};
        console.log(JSON.stringify(["", "00-xyz-00f067aa0ba902b7-01", null,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"].map(traceIdOf)));
    """)
    assert found == [None, None, None, "4bf92f3577b34da6a3ce929d0e0e4736"]
