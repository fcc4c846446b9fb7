#!/usr/bin/env bash
# Installs federa-client from dist/ into a clean Debian 12 root (mmdebstrap, with apt resolving
# the dependencies dpkg-shlibdeps wrote), sets it up as docs/deploy.md says, and runs
# `federa-client doctor` in it against a coordinator on this host's 127.0.0.1. Prints a
# transcript. Not part of ctest: it needs root, mmdebstrap and a Debian mirror, and takes minutes.
#   scripts/package.sh && tests/packaging/clean_root.sh BUILD_DIR
#   ROOT_TAR=/tmp/bookworm.tar tests/packaging/clean_root.sh build   # reuse a made root
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
source "$src/tests/integration/lib.sh" "$1" federa-clean-root
[ "$(id -u)" = 0 ] || { echo "needs root (chroot)"; exit 77; }
deb="$(ls "$src"/dist/federa-client_*.deb | tail -n 1)"
root="$work/root"
in_root() { echo "# $*"; chroot "$root" sh -c "$*"; }

mkdir -p "$root"
if [ -n "${ROOT_TAR:-}" ]; then
  tar -C "$root" -xf "$ROOT_TAR"
else
  command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap >/dev/null
  mmdebstrap --quiet --variant=apt bookworm "$root"
fi
mount --bind /proc "$root/proc"
cleanup_root() {  # never remove the root while /proc is still mounted in it
  umount "$root/proc" 2>/dev/null || true
  if mountpoint -q "$root/proc"; then echo "left $work: $root/proc is still mounted" >&2; else cleanup; fi
}
trap cleanup_root EXIT
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"

echo "== a clean Debian 12 root: $(cat "$root/etc/debian_version"), $(chroot "$root" dpkg -l | grep -c '^ii') packages"
in_root "apt-get update -qq && apt-get install -y -qq /tmp/$(basename "$deb") 2>&1 | grep -E '^(Setting up|Unpacking) (federa|adduser|libssl|libboost|libprotobuf|libspdlog)'"
in_root "dpkg -s federa-client | grep -E '^(Status|Version|Depends)'"
in_root "getent passwd federa; ls -ld /var/lib/federa; ls -l /etc/federa /lib/systemd/system/federa-client.service"

echo "== the central team's side, on the host: PKI and a coordinator on 127.0.0.1"
cd "$work"
"$pki_tool" init --dir pki >/dev/null
"$pki_tool" issue --dir pki --client hospital-a >/dev/null
echo hospital-a >members
P=$(port)
"$coordinator" --pki pki --members members --listen "127.0.0.1:$P" --model softmax:4,2 --min-clients 2 \
  --state-dir state >coordinator.out.log 2>coordinator.log &
pids+=("$!")
wait_for 20 grep -qs "listening on" coordinator.log || fail "coordinator did not start"
echo "coordinator listening on 127.0.0.1:$P, members: hospital-a"

echo "== the member's side, as docs/deploy.md says"
install -d -m 0755 "$root/etc/federa/kit" "$root/srv/federa"
install -m 0644 pki/clients/hospital-a/ca.pem pki/clients/hospital-a/cert.pem "$root/etc/federa/kit/"
install -m 0600 pki/clients/hospital-a/key.pem "$root/etc/federa/kit/key.pem"
python3 -c 'import random; random.seed(3); print("a,b,c,d,outcome"); [print(",".join(f"{random.random():.3f}" for _ in range(4)) + f",{i % 2}") for i in range(500)]' \
  >"$root/srv/federa/train.csv"
chmod 0644 "$root/srv/federa/train.csv"
cat >"$root/etc/federa/client.json" <<EOF
{
  "coordinator": "127.0.0.1:$P",
  "kit": "/etc/federa/kit",
  "data": "csv:/srv/federa/train.csv:label=outcome"
}
EOF
in_root "ls -l /etc/federa/kit; cat /etc/federa/client.json"
set +e
in_root "federa-client doctor --config /etc/federa/client.json; echo \"exit status \$?\""
echo "== and with the key others may read"
in_root "chmod 0644 /etc/federa/kit/key.pem; federa-client doctor --config /etc/federa/client.json >/tmp/doctor.txt; echo \"exit status \$?\"; grep -E '^(FAIL|[0-9]+ check)' /tmp/doctor.txt; chmod 0600 /etc/federa/kit/key.pem"
set -e
