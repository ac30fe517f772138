#!/usr/bin/env bash
# Stop the Ray node (head or worker) started on this machine by start-head.sh/start-worker.sh.
# `ray stop` stops every Ray process of this machine: run it on machines used only for the
# cluster (it would also stop a `ray.init()` of another program running here).
set -euo pipefail
exec ray stop "$@"
