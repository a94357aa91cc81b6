# Sourced by the build scripts: run one long build step with its output in a log, and say on
# stderr every 30 s (HEARTBEAT_EVERY) that it is still going (elapsed time, the log's last line), so a first
# `make demo` or `make test` is never minutes of silence. The loop ends with the step.
#
#   heartbeat_run WHAT LOG COMMAND...   exit status: the command's
heartbeat_run() {
  local what=$1 log=$2; shift 2
  local t0=$SECONDS last=$SECONDS
  "$@" >>"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS - last >= ${HEARTBEAT_EVERY:-30} )) && kill -0 "$pid" 2>/dev/null; then
      last=$SECONDS
      echo "  ... still building $what: $((SECONDS - t0)) s; $(tail -n 1 "$log" 2>/dev/null | cut -c1-100)" >&2
    fi
  done
  wait "$pid"
}
