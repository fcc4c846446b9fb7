#!/usr/bin/env bash
# Lints the C++ sources: clang-format-14 (check only), file sizes, and clang-tidy-14 with the
# naming rule and the bug-prone checks of .clang-tidy (functions over 80 lines included).
# Exits 0 when clean, 1 on any finding, 2 on a usage or setup problem.
#
#   scripts/lint.sh                     # the whole tree
#   scripts/lint.sh common tools/pki_main.cpp      # only these files/folders
#   scripts/lint.sh --changed           # only what differs from main (and uncommitted work)
#   scripts/lint.sh --changed origin/main
#   scripts/lint.sh --fix-format common # rewrite formatting in place, then lint
#
# clang-tidy reads build/compile_commands.json (BUILD_DIR=... for another build folder); the
# script configures that folder and generates the protobuf header when they are missing.
# JOBS=N runs N clang-tidy processes at once (default: the number of cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

build_dir="${BUILD_DIR:-build}"
jobs="${JOBS:-$(nproc)}"
max_file_lines=600
changed_base=""
fix_format=0
paths=()
args=("$@")

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --changed)
      changed_base="main"
      if [ $# -gt 1 ] && [ "${2#-}" = "$2" ] && git rev-parse -q --verify "$2^{commit}" >/dev/null; then
        changed_base="$2"; shift
      fi ;;
    --fix-format) fix_format=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "lint.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) paths+=("$1") ;;
  esac
  shift
done

for tool in clang-format-14 clang-tidy-14; do
  if ! command -v "$tool" >/dev/null; then
    echo "lint.sh: $tool is missing; install it with: sudo apt-get install clang-format-14 clang-tidy-14" >&2
    exit 2
  fi
done

# --- which files --------------------------------------------------------------------------
cxx_globs=('*.cpp' '*.hpp' '*.inl' '*.cu' '*.cuh' '*.h')
if [ -n "$changed_base" ]; then
  base=$(git merge-base "$changed_base" HEAD)
  mapfile -t files < <({ git diff --name-only --diff-filter=d "$base" -- "${cxx_globs[@]}";
                         git ls-files --others --exclude-standard -- "${cxx_globs[@]}"; } | sort -u)
else
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- "${cxx_globs[@]}" | sort -u)
fi
if [ ${#paths[@]} -gt 0 ]; then
  selected=()
  for f in "${files[@]}"; do
    for p in "${paths[@]}"; do
      p="${p%/}"
      if [ "$f" = "$p" ] || [[ "$f" == "$p"/* ]]; then selected+=("$f"); break; fi
    done
  done
  files=("${selected[@]+"${selected[@]}"}")
fi
existing=()
for f in "${files[@]+"${files[@]}"}"; do [ -f "$f" ] && existing+=("$f"); done
files=("${existing[@]+"${existing[@]}"}")
if [ ${#files[@]} -eq 0 ]; then
  echo "lint.sh: no C++ files to check"
  exit 0
fi

findings=0

# --- formatting ---------------------------------------------------------------------------
if [ "$fix_format" = 1 ]; then clang-format-14 -i "${files[@]}"; fi
unformatted=()
for f in "${files[@]}"; do
  clang-format-14 --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if [ ${#unformatted[@]} -gt 0 ]; then
  echo "== clang-format: ${#unformatted[@]} file(s) not formatted as .clang-format says:"
  printf '   %s\n' "${unformatted[@]}"
  echo "   fix with: clang-format-14 -i ${unformatted[*]}"
  echo "         or: scripts/lint.sh --fix-format ${args[*]:-}"
  findings=$((findings + ${#unformatted[@]}))
fi

# --- sizes --------------------------------------------------------------------------------
oversize=()
for f in "${files[@]}"; do
  n=$(wc -l < "$f")
  [ "$n" -gt "$max_file_lines" ] && oversize+=("$f: $n lines")
done
if [ ${#oversize[@]} -gt 0 ]; then
  echo "== file size: ${#oversize[@]} file(s) over $max_file_lines lines (split along responsibilities):"
  printf '   %s\n' "${oversize[@]}"
  findings=$((findings + ${#oversize[@]}))
fi

# --- clang-tidy ---------------------------------------------------------------------------
if [ ! -f "$build_dir/compile_commands.json" ]; then
  echo "lint.sh: configuring $build_dir for compile_commands.json" >&2
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if [ ! -f "$build_dir/protocols/federa.pb.h" ]; then
  echo "lint.sh: generating protocols/federa.pb.h in $build_dir" >&2
  cmake --build "$build_dir" --target federa_protocols >/dev/null
fi
# Translation units: the selected .cpp files that the build compiles, plus, for each selected
# header, the .cpp files that include it (so --changed on a header checks its users).
mapfile -t built < <(python3 - "$build_dir/compile_commands.json" "$root" <<'EOF'
import json, os, sys
root = sys.argv[2] + os.sep
for e in json.load(open(sys.argv[1])):
    f = os.path.normpath(os.path.join(e["directory"], e["file"]))
    if f.startswith(root) and f.endswith(".cpp"):
        print(f[len(root):])
EOF
)
declare -A is_built=() want=()
for f in "${built[@]}"; do is_built["$f"]=1; done
headers=()
for f in "${files[@]}"; do
  case "$f" in
    *.cpp) [ -n "${is_built[$f]:-}" ] && want["$f"]=1 ;;
    *.hpp|*.inl|*.h) headers+=("$f") ;;
  esac
done
if [ -n "$changed_base" ] && [ ${#headers[@]} -gt 0 ]; then
  for h in "${headers[@]}"; do
    for f in "${built[@]}"; do grep -qF "#include \"$h\"" "$f" && want["$f"]=1; done
  done
fi
units=("${!want[@]}")
tidy_out=$(mktemp -d)
trap 'rm -rf "$tidy_out"' EXIT
if [ ${#units[@]} -gt 0 ]; then
  echo "lint.sh: clang-tidy-14 on ${#units[@]} translation unit(s), $jobs at a time" >&2
  start=$(date +%s)
  printf '%s\n' "${units[@]}" | xargs -P "$jobs" -I{} sh -c \
    'clang-tidy-14 -p "$1" --quiet "$2" > "$3/$(echo "$2" | tr / _).log" 2>&1 || true' \
    _ "$build_dir" {} "$tidy_out"
  echo "lint.sh: clang-tidy took $(( $(date +%s) - start )) s" >&2
fi
# One line per finding, "path:line:col: severity: message [check]", relative to the repository,
# limited to the selected files, each once (a header is seen by every unit that includes it).
declare -A selected_file=()
for f in "${files[@]}"; do selected_file["$f"]=1; done
tidy_findings="$tidy_out/findings.txt"
: > "$tidy_findings"
if compgen -G "$tidy_out/*.log" >/dev/null; then
  sed -e 's/\x1b\[[0-9;]*m//g' "$tidy_out"/*.log |
    awk '  # a function-size warning gets the line count from the note that follows it
      function flush() { if (held != "") print held; held = "" }
      / (warning|error): / { flush() }
      /\[readability-function-size\]$/ { held = $0; next }
      held != "" && match($0, /note: [0-9]+ lines including/) {
        sub(/ \[readability-function-size\]$/, "", held)
        held = held " (" substr($0, RSTART + 6, RLENGTH - 22) " lines) [readability-function-size]"
        flush(); next
      }
      { print }
      END { flush() }' |
    grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): ' |
    sed -e "s#^$root/##" | sort -u |
    while IFS= read -r line; do
      [ -n "${selected_file[${line%%:*}]:-}" ] && printf '%s\n' "$line"
    done > "$tidy_findings" || true
fi
n_tidy=$(wc -l < "$tidy_findings")
if [ "$n_tidy" -gt 0 ]; then
  echo "== clang-tidy: $n_tidy finding(s):"
  sed 's/^/   /' "$tidy_findings"
  echo "== clang-tidy findings per file:"
  cut -d: -f1 "$tidy_findings" | sort | uniq -c | sort -rn | sed 's/^/   /'
  echo "== clang-tidy findings per check:"
  grep -oE '\[[a-z0-9.,-]+\]$' "$tidy_findings" | sort | uniq -c | sort -rn | sed 's/^/   /'
  findings=$((findings + n_tidy))
fi

if [ "$findings" -gt 0 ]; then
  echo "lint.sh: $findings finding(s) in ${#files[@]} file(s) checked"
  exit 1
fi
echo "lint.sh: clean (${#files[@]} files, ${#units[@]} translation units)"
