"""scenario.py plugin (--plugin FILE): the client's own time to the first content token, per request.

The fake API measures TTFT on the server (`server_ttft_ms`: from reading the request to writing
the first `content_block_delta`). What an instrumentation reports is measured in the client, from
the start of the SDK call to the moment the client reads that delta. On a busy machine the two
differ by the client's scheduling: a Python client stalled for 100 ms after the server wrote the
first delta reads it (and the rest of the stream, buffered) 100 ms late, and reports so. The live
test compares claudewatch's `ttft_ms` with this client-side measure, not with the server's alone.

It patches, below every instrumentation:
- the HTTP client's `send` (httpx2 for anthropic 2.x, httpx before), to stamp when the request
  was handed to the transport;
- `anthropic._streaming.Stream._iter_events`, to stamp when the SDK decodes the first
  `content_block_delta` event of a response.

One JSON line per streamed response goes to the file named by CLAUDEWATCH_CLIENT_TIMING:
{"request_id": "...", "client_ttft_ms": 152.3}. Without that variable the plugin does nothing.
It defines no setups (SETUPS is empty): it only observes.
"""
import json
import os
import threading
import time

SETUPS = {}

_PATH = os.environ.get("CLAUDEWATCH_CLIENT_TIMING")
_LOCK = threading.Lock()


def _write(line):
    with _LOCK, open(_PATH, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def _patch():
    import anthropic._base_client as base
    import anthropic._streaming as streaming

    http = getattr(base, "httpx2", None) or getattr(base, "httpx")
    original_send = http.Client.send

    def send(self, request, *args, **kwargs):
        started = time.monotonic()
        response = original_send(self, request, *args, **kwargs)
        try:
            response._claudewatch_sent_at = started
        except Exception:  # noqa: BLE001 - never disturb the client under test
            pass
        return response

    http.Client.send = send

    original_iter_events = streaming.Stream._iter_events

    def iter_events(self):
        first_delta_seen = False
        for sse in original_iter_events(self):
            if not first_delta_seen and sse.event == "content_block_delta":
                first_delta_seen = True
                sent_at = getattr(self.response, "_claudewatch_sent_at", None)
                if sent_at is not None:
                    _write({
                        "request_id": self.response.headers.get("request-id"),
                        "client_ttft_ms": round((time.monotonic() - sent_at) * 1000, 1),
                    })
            yield sse

    streaming.Stream._iter_events = iter_events


if _PATH:
    _patch()
