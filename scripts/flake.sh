#!/usr/bin/env bash
# flake.sh runs the tests several times with the race detector while busy loops keep every
# core loaded, so that a test that depends on timing fails here before it fails in CI.
#
# Usage: scripts/flake.sh [-n RUNS] [-l LOADERS] [-r REGEX] [-t TIMEOUT] [PACKAGE...]
#
#   -n RUNS     how many times each test runs (go test -count; default 5)
#   -l LOADERS  how many busy loops run beside the tests (default: one per core, nproc)
#   -r REGEX    run only the tests that match (go test -run)
#   -t TIMEOUT  go test -timeout for each package's test binary (default 60m)
#   PACKAGE     the packages to test (default ./...)
#
# It prints each failed test with the number of its failures, and how long the run took, and
# exits with status 1 when any test failed (2 for a usage error). The full go test output is
# kept in a temporary file whose name it prints. Waits in tests scale with ANNALS_WAIT_SCALE
# (see internal/testwait); the script leaves it as the environment sets it.
set -u

runs=5
loaders=$(nproc 2>/dev/null || echo 2)
run_re=
timeout=60m
while getopts "n:l:r:t:h" opt; do
	case $opt in
	n) runs=$OPTARG ;;
	l) loaders=$OPTARG ;;
	r) run_re=$OPTARG ;;
	t) timeout=$OPTARG ;;
	h) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
case $runs in '' | *[!0-9]* | 0) echo "flake.sh: -n wants a positive number, got '$runs'" >&2; exit 2 ;; esac
case $loaders in '' | *[!0-9]*) echo "flake.sh: -l wants a number, got '$loaders'" >&2; exit 2 ;; esac
if [ $# -eq 0 ]; then
	set -- ./...
fi

log=$(mktemp "${TMPDIR:-/tmp}/flake.XXXXXX")
pids=()
stop_load() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null
	done
	pids=()
}
trap stop_load EXIT
trap 'stop_load; exit 130' INT TERM

# Build first, without load, so that the runs measure the tests and a compile error shows
# as such.
if ! go test -race -count=1 -run '^$' "$@" >"$log" 2>&1; then
	cat "$log"
	echo "flake.sh: the packages do not build; see above" >&2
	exit 1
fi

for ((i = 0; i < loaders; i++)); do
	(while :; do :; done) &
	pids+=($!)
done

args=(-race -count="$runs" -timeout="$timeout")
if [ -n "$run_re" ]; then
	args+=(-run "$run_re")
fi
echo "flake.sh: go test ${args[*]} $* with $loaders busy loops; output in $log"
start=$(date +%s)
go test "${args[@]}" "$@" >"$log" 2>&1
status=$?
end=$(date +%s)
stop_load

elapsed=$((end - start))
printf 'flake.sh: %d run(s) took %dm%02ds\n' "$runs" $((elapsed / 60)) $((elapsed % 60))
if [ $status -eq 0 ]; then
	echo "flake.sh: no failure"
	exit 0
fi
echo "flake.sh: failures (count, test):"
# Subtests are listed under their parents; a package that failed without a failed test
# (a panic, a timeout, a build error) shows as its FAIL line.
grep -E '^\s*--- FAIL: ' "$log" | sed -E 's/^\s*--- FAIL: ([^ ]+).*/\1/' | sort | uniq -c | sort -rn
grep -E '^(FAIL\s|panic: )' "$log" | sort | uniq -c
exit 1
