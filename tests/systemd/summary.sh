#!/usr/bin/env bash
# The matrix table: one row per (systemd version, run, scenario), rendered as markdown.
#
# Why a file of rows: each `exuvia vm` run of matrix.sh appends its rows as it finishes, so a
# partial or failed CI run still shows what ran; `render` turns them into the table .ci/run
# prints at the end.
#
# Usage: summary.sh rows RUN EXPECT RC REPORT_JSON >> results.tsv
#          EXPECT: pass | fail (a negative control) | known (a known defect, see README.md)
#                  | info (numbers reported, never fails)
#        summary.sh render RESULTS_TSV [TITLE]      (markdown on stdout)
# Row columns (tab-separated): suite systemd run/scenario verdict seconds requests failed
# retried reloads p50_ms p99_ms. Numbers come from `exuvia vm --json`; "-" where a run never
# got that far.
set -euo pipefail

rows() {
  local run=$1 expect=$2 rc=$3 json=$4 label
  case $expect in
    pass) label='' ;;
    fail) label=$([[ $rc == 1 ]] && echo "pass (failed as required)" || echo "FAIL (control not caught)") ;;
    info) label=$([[ $rc == 0 || $rc == 1 ]] && echo "reported" || echo "FAIL (no report)") ;;
    known) label=$([[ $rc == 1 ]] && echo "known defect" || echo "FAIL (exit $rc; 0: the defect is fixed, drop the mark)") ;;
  esac
  if [[ ! -s $json ]]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' - - "$run" "${label:-FAIL (exit $rc)}" - - - - - - -
    return
  fi
  jq -r --arg run "$run" --arg lab "$label" '
    .versions[] as $v | $v.scenarios[] |
    [$v.suite, $v.systemd, "\($run)/\(.name)",
     (if $lab != "" then "\($lab): \(.verdict)" elif .pass then "pass" elif .verdict == "fail" then "FAIL" else "FAIL: \(.verdict)" end),
     (.seconds * 10 | round / 10), .requests, .failed, .retried, .reloads, .p50_ms, .p99_ms]
    | map(if . == null then "-" else tostring end) | @tsv' "$json"
}

render() {
  local tsv=$1 title=${2:-real-systemd matrix}
  [[ -s $tsv ]] || { echo "summary.sh: no rows in $tsv" >&2; return 1; }
  echo "### $title"
  echo
  echo "| suite | systemd | run/scenario | requests | failed | retried | reloads | reload p50 ms | p99 ms | time s | verdict |"
  echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $6, $7, $8, $9, $10, $11, $5, $4 }' "$tsv"
  local n bad
  n=$(wc -l <"$tsv")
  bad=$(awk -F'\t' '$4 ~ /^FAIL/' "$tsv" | wc -l)
  echo
  echo "$((n - bad)) of $n rows as required; failed = requests the load clients saw fail; retried = HTTP requests retried on a fresh connection (a keep-alive connection closed under them); reloads = reloads judged (restart: restarts)."
}

case ${1:-} in
  rows) shift; rows "$@" ;;
  render) shift; render "$@" ;;
  *) echo "usage: summary.sh rows RUN EXPECT RC JSON | render TSV [TITLE]" >&2; exit 2 ;;
esac
