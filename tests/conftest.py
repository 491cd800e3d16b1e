"""Suite-wide settings.

Tests here run real models, real SIP peers and real servers, all on loopback.
GPU tests (tests/gpu/) skip with a clear reason when CUDA is absent; nothing else skips.
"""

from __future__ import annotations

import os

# An on-prem product phones nowhere: keep every library offline during tests too.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# onnxruntime otherwise sends usage telemetry (seen as a DNS lookup in the capture).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
