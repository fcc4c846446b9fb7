#!/usr/bin/env bash
# The Debian packages as an operator gets them: scripts/package.sh --no-build makes them from
# the tested build, then for each one
#   - dpkg-deb --contents holds exactly the expected files, the conffiles and maintainer scripts
#     are in the control archive, and every dependency dpkg-shlibdeps wrote names a package;
#   - it unpacks (dpkg -x) into a temporary root where every program's --help runs and every
#     man page is a man page;
#   - systemd-analyze verify passes on both units in that root, alone and with the GPU drop-in
#     examples installed, and systemd-analyze security rates each at most 2.0 ("OK"; 10 = none).
# Usage: packages.sh BUILD_DIR SOURCE_DIR. Exits 77 (skipped) when a tool is missing or the build
# was configured for another prefix.
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
for tool in dpkg-deb dpkg-shlibdeps cpack systemd-analyze; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (scripts/setup-debian.sh installs it)"; exit 77; }
done
work="$(mktemp -d /tmp/federa-packages.XXXXXX)"
trap 'rm -rf "$work"' EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== scripts/package.sh --no-build"
start=$(date +%s)
set +e
BUILD_DIR="$build" DIST_DIR="$work/dist" bash "$src/scripts/package.sh" --no-build >"$work/package.log" 2>&1
rc=$?
set -e
if [ "$rc" = 3 ]; then
  echo "SKIP: $(tail -n 1 "$work/package.log")"
  exit 77
fi
[ "$rc" = 0 ] || { cat "$work/package.log" >&2; fail "scripts/package.sh exited $rc"; }
echo "   packaged in $(( $(date +%s) - start )) s"
deb() { ls "$work"/dist/"$1"_*.deb; }

expected_client="/etc/federa/client.README
/etc/federa/client.json
/lib/systemd/system/federa-client.service
/usr/bin/federa-client
/usr/share/doc/federa-client/copyright
/usr/share/doc/federa-client/deploy.md
/usr/share/doc/federa-client/examples/client-gpu.conf
/usr/share/doc/federa-client/external-trainer.md
/usr/share/doc/federa-client/examples/pytorch/README.md
/usr/share/doc/federa-client/examples/pytorch/train_fmnist.py
/usr/lib/python3/dist-packages/federa_trainer.py
/usr/share/man/man1/federa-client.1.gz"
expected_coordinator="/etc/federa/coordinator.README
/etc/federa/coordinator.json
/etc/federa/members
/lib/systemd/system/federa-coordinator.service
/usr/bin/federa-coordinator
/usr/share/doc/federa-coordinator/certificates.md
/usr/share/doc/federa-coordinator/copyright
/usr/share/doc/federa-coordinator/deploy.md
/usr/share/doc/federa-coordinator/examples/coordinator-gpu.conf
/usr/share/man/man1/federa-coordinator.1.gz"
tools="federa-bench federa-pki federa-sim"
# federa-admin is packaged when the build has it.
# (Outputs are captured before grep -q: under pipefail an early grep exit fails the producer.)
grep -q '\./usr/bin/federa-admin$' <<< "$(dpkg-deb --contents "$(deb federa-tools)")" && tools="federa-admin $tools"
expected_tools="$(for t in $tools; do echo "/usr/bin/$t"; echo "/usr/share/man/man1/$t.1.gz"; done
  echo /usr/share/doc/federa-tools/certificates.md; echo /usr/share/doc/federa-tools/copyright)"

echo "== contents and control"
for pkg in client coordinator tools; do
  file="$(deb "federa-$pkg")"
  got="$(dpkg-deb --contents "$file" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\.||' | sort)"
  want_var="expected_$pkg"
  want="$(printf '%s\n' "${!want_var}" | sort)"
  [ "$got" = "$want" ] || fail "federa-$pkg holds:
$got
expected:
$want"
  [ "$(dpkg-deb -f "$file" Package)" = "federa-$pkg" ] || fail "federa-$pkg: wrong Package field"
  depends="$(dpkg-deb -f "$file" Depends)"
  echo "$depends" | grep -q 'libssl3' || fail "federa-$pkg: no libssl3 in Depends (dpkg-shlibdeps?): $depends"
  # Every dependency names a package this Debian has (dpkg-shlibdeps resolved the libraries).
  for dep in $(echo "$depends" | tr ',' '\n' | sed 's/(.*)//; s/|.*//' | tr -d ' '); do
    dpkg-query -W "$dep" >/dev/null 2>&1 || apt-cache show "$dep" >/dev/null 2>&1 ||
      fail "federa-$pkg depends on '$dep', which no package provides"
  done
done
for pkg in client coordinator; do
  file="$(deb "federa-$pkg")"
  grep -q 'adduser' <<< "$(dpkg-deb -f "$file" Depends)" || fail "federa-$pkg must depend on adduser (postinst)"
  dpkg-deb -e "$file" "$work/control-$pkg"
  for script in postinst prerm postrm; do
    [ -x "$work/control-$pkg/$script" ] || fail "federa-$pkg: no executable $script"
    sh -n "$work/control-$pkg/$script" || fail "federa-$pkg: $script is not valid sh"
  done
  grep -q 'adduser --quiet --system' "$work/control-$pkg/postinst" || fail "federa-$pkg: postinst creates no system user"
  conffiles="$(sort "$work/control-$pkg/conffiles")"
  want_var="expected_$pkg"
  want="$(printf '%s\n' "${!want_var}" | grep '^/etc/' | sort)"
  [ "$conffiles" = "$want" ] || fail "federa-$pkg conffiles: $conffiles (expected $want)"
done
grep -q 'procps' <<< "$(dpkg-deb -f "$(deb federa-coordinator)" Depends)" || fail "federa-coordinator must depend on procps (/bin/kill)"

echo "== unpacked into a temporary root: --help and man pages"
root="$work/root"
for pkg in client coordinator tools; do dpkg -x "$(deb "federa-$pkg")" "$root"; done
for program in federa-client federa-coordinator $tools; do
  out="$("$root/usr/bin/$program" --help 2>&1)" || fail "$program --help exited non-zero"
  echo "$out" | grep -qi "usage" || fail "$program --help printed no usage: $out"
  page="$root/usr/share/man/man1/$program.1.gz"
  grep -q "^\.TH \"*${program^^}" <<< "$(zcat "$page")" || fail "$page is not a man page for $program"
done
grep -q -- "--service-user" <<< "$("$root/usr/bin/federa-coordinator" doctor --help)" || fail "coordinator doctor --help"
# The trainer helper imports from where Debian's python3 looks (no numpy or torch needed).
PYTHONPATH="$root/usr/lib/python3/dist-packages" /usr/bin/python3 -c 'import federa_trainer' ||
  fail "federa_trainer.py does not import from the package's dist-packages"
python3 -c 'import json,sys; [json.load(open(f)) for f in sys.argv[1:]]' \
  "$root/etc/federa/client.json" "$root/etc/federa/coordinator.json" || fail "shipped config is not JSON"

echo "== systemd units in that root"
# ExecReload=/bin/kill comes from procps, a dependency: put it where dpkg would.
mkdir -p "$root/bin" && cp /bin/kill "$root/bin/kill"
cd "$root"
verify() {
  systemd-analyze verify --man=no --generators=no --recursive-errors=no --root="$root" \
    "lib/systemd/system/$1" >"$work/verify.log" 2>&1 || { cat "$work/verify.log" >&2; fail "systemd-analyze verify $1 $2"; }
}
exposure() {
  systemd-analyze security --offline=true --root="$root" --no-pager "lib/systemd/system/$1" 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
for unit in federa-client federa-coordinator; do
  verify "$unit.service" ""
  systemd-analyze security --offline=true --root="$root" --threshold=20 --no-pager "lib/systemd/system/$unit.service" \
    >/dev/null 2>&1 || fail "$unit.service: exposure $(exposure "$unit.service") is above 2.0"
  score_plain="$(exposure "$unit.service")"
  dropin="$root/etc/systemd/system/$unit.service.d"
  mkdir -p "$dropin"
  cp "$root/usr/share/doc/$unit/examples/${unit#federa-}-gpu.conf" "$dropin/gpu.conf"
  verify "$unit.service" "with the GPU drop-in"
  echo "   $unit.service: verify ok; exposure $score_plain, $(exposure "$unit.service") with the GPU drop-in"
  rm -rf "$dropin"
done
echo "packaging: all checks passed"
