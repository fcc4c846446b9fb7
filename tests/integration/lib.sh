# Shared by the whole-binary scenario scripts: `source lib.sh BUILD_DIR STEM` sets the programs'
# paths, makes a work folder /tmp/STEM.XXXXXX (removed at exit unless KEEP=1), kills the
# processes listed in `pids` at exit, and defines fail, port and wait_for.
build="$(cd "$1" && pwd)"
pki_tool="$build/tools/federa-pki"
coordinator="$build/coordinator/federa-coordinator"
client="$build/client/federa-client"
work="$(mktemp -d "/tmp/$2.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log "$work"/*/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done >&2
  exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for SECONDS COMMAND...
  local t=$1; shift
  for _ in $(seq 1 $((t * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}
