#!/usr/bin/env bash
# The matrix table: one row per (suite, scenario) run, rendered as markdown.
#
# Why a file of rows: each run-all.sh invocation (one suite) and the VM run
# append rows as they finish, so a partial or failed CI run still shows what
# ran; `render` turns them into the table .ci/run prints at the end.
#
# Usage: summary.sh row SUITE SYSTEMD NAME RC SECONDS RUN_OUTPUT >> results.tsv
#        summary.sh render RESULTS_TSV [TITLE]      (markdown on stdout)
# Row columns (tab-separated): suite systemd name verdict seconds requests
# failed reloads p50_ms p99_ms. Numbers come from the driver's
# `RESULT metric=summary` line; "-" where a run never got that far.
set -euo pipefail

row() {
  local suite=$1 systemd=$2 name=$3 rc=$4 secs=$5 out=$6 line verdict
  line=$(grep -ho 'RESULT metric=summary .*' "$out" 2>/dev/null | tail -1 || true)
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${line#RESULT metric=summary}"; }
  if [[ $name == negative-* ]]; then
    # A negative control passes by failing the check it targets.
    verdict=$([[ $rc == 0 ]] && echo "pass (failed as required)" || echo "FAIL (control not caught)")
  else
    verdict=$([[ $rc == 0 ]] && echo pass || echo FAIL)
  fi
  local req fail rel p50 p99
  req=$(get requests) fail=$(get failed) rel=$(get reloads) p50=$(get p50_ms) p99=$(get p99_ms)
  [[ ${p50:--1} == -1 ]] && p50=-
  [[ ${p99:--1} == -1 ]] && p99=-
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$suite" "$systemd" "$name" "$verdict" "$secs" \
    "${req:--}" "${fail:--}" "${rel:--}" "$p50" "$p99"
}

render() {
  local tsv=$1 title=${2:-real-systemd matrix}
  [[ -s $tsv ]] || { echo "summary.sh: no rows in $tsv" >&2; return 1; }
  echo "### $title"
  echo
  echo "| suite | systemd | scenario | requests | failed | reloads | reload p50 ms | p99 ms | time s | verdict |"
  echo "|---|---|---|--:|--:|--:|--:|--:|--:|---|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $6, $7, $8, $9, $10, $5, $4 }' "$tsv"
  local n bad
  n=$(wc -l <"$tsv")
  bad=$(awk -F'\t' '$4 ~ /^FAIL/' "$tsv" | wc -l)
  echo
  echo "$((n - bad)) of $n runs passed; failed = failed requests seen by the load clients (and \`exuvia check\`); reloads = handovers timed (restart: restarts)."
}

case ${1:-} in
  row) shift; row "$@" ;;
  render) shift; render "$@" ;;
  *) echo "usage: summary.sh row ...|render TSV [TITLE]" >&2; exit 2 ;;
esac
