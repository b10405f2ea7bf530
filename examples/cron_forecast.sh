#!/usr/bin/env bash
# Forecast the next frames from the newest N rasters of a folder into a dated output folder.
#
# Usage: cron_forecast.sh INPUT_DIR RUN_DIR OUTPUT_ROOT
#   writes OUTPUT_ROOT/<STAMP>/ (one Cloud-Optimized GeoTIFF per lead time) and appends to OUTPUT_ROOT/cron_forecast.log
#   <STAMP> names the data, not the run: by default the newest input's name without its ending (e.g.
#   ndvi_2024-03-05), so a run on the same data finds its forecast done, and new data makes a new folder.
# Settings (environment, defaults shown):
#   N=10            newest files used as context ("newest" = last in name order, as date-named files sort)
#   HORIZON=5       frames to forecast
#   PATTERN='*.tif' which files of INPUT_DIR are inputs
#   STAMP=<newest input's name>   name of the output folder
#   VMRNN=vmrnn     the command to run (e.g. "/opt/vmrnn/.venv/bin/vmrnn")
#   LOG=OUTPUT_ROOT/cron_forecast.log
# Exit code: 0 forecast written; vmrnn's own code (1 runtime error, 2 usage error) if it failed; 1 no input
# files; 2 wrong arguments; 3 this forecast already exists
# (a finished forecast is never overwritten) or another run holds the lock.
# crontab example (06:15 UTC every day):
#   15 6 * * * /opt/vmrnn/examples/cron_forecast.sh /data/ndvi /models/ndvi /data/forecasts
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 INPUT_DIR RUN_DIR OUTPUT_ROOT" >&2
    exit 2
fi
input_dir=$1 run_dir=$2 output_root=$3
n=${N:-10}
horizon=${HORIZON:-5}
pattern=${PATTERN:-*.tif}
read -r -a vmrnn <<<"${VMRNN:-vmrnn}"
mkdir -p "$output_root"
log=${LOG:-$output_root/cron_forecast.log}

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$log"; }

exec 9>"$output_root/.cron_forecast.lock"
if ! flock -n 9; then
    say "another forecast is running (lock $output_root/.cron_forecast.lock); giving up"
    exit 3
fi

mapfile -d '' inputs < <(find "$input_dir" -maxdepth 1 -type f -name "$pattern" -print0 | sort -z | tail -z -n "$n")
if [[ ${#inputs[@]} -eq 0 ]]; then
    say "no files matching '$pattern' in $input_dir"
    exit 1
fi
newest=$(basename "${inputs[-1]}")
stamp=${STAMP:-${newest%.*}}
out=$output_root/$stamp
if [[ -e $out ]]; then
    say "$out already exists; refusing to overwrite a finished forecast"
    exit 3
fi

say "forecasting $horizon frames from ${#inputs[@]} files (${inputs[0]} .. ${inputs[-1]}) into $out"
status=0
"${vmrnn[@]}" predict -m "$run_dir" --horizon "$horizon" -o "$out" "${inputs[@]}" >>"$log" 2>&1 || status=$?
if [[ $status -eq 0 ]]; then
    say "done: $out"
else
    say "vmrnn predict failed with exit code $status"
fi
exit "$status"
