"""Command line: `python -m chserver --data DIR [--host H] [--port P]`."""

import argparse
import logging
import os
import signal
import sys

from .engine import Engine
from .server import Server

log = logging.getLogger("chserver")


def _stop(signum, _frame) -> None:
    raise SystemExit(f"signal {signal.Signals(signum).name}")


def main() -> int:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and exit 0."""
    parser = argparse.ArgumentParser(prog="chserver", description=__doc__)
    parser.add_argument("--data", required=True, help="data directory, created if missing; kept across restarts")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8123, help="port (default 8123; 0 picks a free one)")
    parser.add_argument("--user", default="default", help="the one user accepted (default: default)")
    parser.add_argument("--password", default="", help="its password (default: empty)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.makedirs(args.data, exist_ok=True)
    engine = Engine(os.path.abspath(args.data))
    server = Server((args.host, args.port), engine, args.user, args.password)
    host, port = server.server_address[:2]
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info(
        "listening on http://%s:%d (ClickHouse %s engine, chdb-core; data in %s)",
        host,
        port,
        engine.version,
        os.path.abspath(args.data),
    )
    try:
        server.serve_forever()
    except SystemExit as stop:
        log.info("stopping on %s", stop)
    finally:
        server.server_close()
        if not server.wait_idle(timeout=30):
            log.warning("requests still running after 30 s; closing the engine anyway")
        engine.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
