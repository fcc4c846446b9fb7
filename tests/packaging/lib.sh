# Sourced by the packaging scenario scripts after tests/integration/lib.sh (fail).
#
# sign CN DAYS EKU OUT_DIR [SAN]: a kit the PKI tool would never make (already expired, or about
# to), signed with openssl by the CA in ./pki. DAYS -1: expired yesterday; EKU serverAuth or
# clientAuth.
sign() {
  mkdir -p "$4"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$4/key.pem" \
    -subj "/CN=$1" -out "$4/req.csr" 2>/dev/null
  { echo "basicConstraints=CA:FALSE"; echo "extendedKeyUsage=$3"; [ -n "${5:-}" ] && echo "subjectAltName=$5"; } >"$4/ext"
  openssl x509 -req -in "$4/req.csr" -CA pki/ca.pem -CAkey pki/ca.key -days "$2" -extfile "$4/ext" \
    -out "$4/cert.pem" 2>/dev/null
  cp pki/ca.pem "$4/ca.pem"
  chmod 600 "$4/key.pem"
}

# doctor_expect PROGRAM EXIT_STATUS PATTERN [ARGS...]: `PROGRAM doctor ARGS` exits EXIT_STATUS and
# prints a line matching PATTERN (extended regex); its output stays in doctor.log.
doctor_expect() {
  local program=$1 want=$2 pattern=$3; shift 3
  set +e
  "$program" doctor "$@" >doctor.log 2>doctor-stderr.log
  local rc=$?
  set -e
  [ "$rc" = "$want" ] || fail "doctor $* exited $rc, expected $want"
  grep -Eq -- "$pattern" doctor.log || fail "doctor $* printed no line matching '$pattern'"
}

# expect_exit PID STATUS WHAT: waits for PID and fails unless it exited with STATUS.
expect_exit() {
  set +e
  wait "$1"
  local rc=$?
  set -e
  [ "$rc" = "$2" ] || fail "$3: exit status $rc, expected $2"
}
