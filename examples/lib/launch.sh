# The one entry of the example scripts: `tars_launch recipe|sft MODEL "$@"`, in one shell, so the stages share
# plain shell variables and arrays (nothing is exported from one script to the next).
#   defaults.sh       every knob's default (per model layout, then the recipe's)
#   args.sh           the command line (--dry-run, --print-cmd, --sft/--grpo overrides), run-or-print
#   sft_warmstart.sh  the SFT stage        tars_grpo.sh  the GRPO stage        tars_recipe.sh  SFT, then GRPO
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/defaults.sh"
source "$(dirname "${BASH_SOURCE[0]}")/args.sh"
source "$(dirname "${BASH_SOURCE[0]}")/sft_warmstart.sh"
source "$(dirname "${BASH_SOURCE[0]}")/tars_grpo.sh"
source "$(dirname "${BASH_SOURCE[0]}")/tars_recipe.sh"

tars_launch() {
  local what=$1 model=$2
  shift 2
  tars_defaults "$model"
  tars_parse_args "$what" "$@"
  if [ "$what" = sft ]; then tars_sft_stage; else tars_recipe; fi
}
