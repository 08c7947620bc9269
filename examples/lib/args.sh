# Sourced by the examples' lib scripts: splits "$@" into DRY_RUN (from --dry-run or TARS_DRY_RUN=1)
# and EXTRA (the Hydra overrides that pass through to verl).
DRY_RUN=${TARS_DRY_RUN:-0}
EXTRA=()
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then DRY_RUN=1; else EXTRA+=("$arg"); fi
done
