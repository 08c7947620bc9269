# The scripts' own command line, parsed once for the whole chain, and how a stage command is run or printed.
#
#   [--dry-run] [--print-cmd] [OVERRIDE...] [--sft OVERRIDE...] [--grpo OVERRIDE...]
#
# OVERRIDEs are Hydra overrides. Those before any separator go to the script's own stage (GRPO for run_tars_*.sh,
# SFT for run_sft_warmstart_*.sh); after --sft they go to the SFT stage, after --grpo to GRPO, until the next
# separator. Each one stays ONE argument, spaces and quotes included: they are kept in bash arrays, never in a
# string that the shell splits again.

TARS_USAGE="usage: bash examples/<script> [--dry-run] [--print-cmd] [OVERRIDE...] [--sft OVERRIDE...] [--grpo OVERRIDE...]
  --dry-run    check each stage's config, data, models and reward (python -m tars_verl.training.dry_run); no GPU, no training
  --print-cmd  print each stage's exact command, shell-quoted (paste it to run it), and run nothing
  --sft/--grpo the overrides that follow go to that stage (before either: the script's own stage)
  knobs: environment variables, every default in examples/lib/defaults.sh"

# tars_parse_args recipe|sft "$@": sets DRY_RUN, PRINT_CMD and the arrays SFT_ARGS and GRPO_ARGS.
# shellcheck disable=SC2034  # the stage functions, sourced next to this file, read what it sets
tars_parse_args() {
  local stage=grpo only=  # the recipe runs both stages, GRPO's overrides first; run_sft_warmstart_*.sh only SFT
  if [ "$1" = sft ]; then stage=sft only=sft; fi
  shift
  if [ -n "${SFT_EXTRA_ARGS:-}" ]; then
    # The old way split this string on spaces, so an override with a space broke into pieces; not read any more.
    echo "[tars] SFT_EXTRA_ARGS is no longer read: pass the SFT stage's overrides after --sft, each as one" \
      "argument (bash examples/<script> [GRPO overrides] --sft <SFT overrides>), and unset SFT_EXTRA_ARGS" >&2
    exit 2
  fi
  DRY_RUN=$TARS_DRY_RUN
  PRINT_CMD=0
  SFT_ARGS=()
  GRPO_ARGS=()
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      --print-cmd) PRINT_CMD=1 ;;
      --sft | --grpo)
        stage=${arg#--}
        if [ -n "$only" ] && [ "$stage" != "$only" ]; then
          echo "[tars] $arg: this script runs the $only stage only (run_tars_*.sh runs both)" >&2
          exit 2
        fi
        ;;
      -h | --help)
        echo "$TARS_USAGE"
        exit 0
        ;;
      *) if [ "$stage" = sft ]; then SFT_ARGS+=("$arg"); else GRPO_ARGS+=("$arg"); fi ;;
    esac
  done
}

# tars_note TEXT: a progress line; with --print-cmd a comment, so the printed commands still paste as they are.
tars_note() {
  if [ "$PRINT_CMD" = 1 ]; then echo "# $*"; else echo "[tars] $*"; fi
}

# tars_stage TEXT: with --print-cmd, a comment that names the stage whose commands follow.
tars_stage() {
  if [ "$PRINT_CMD" = 1 ]; then echo "# $*"; fi
}

# tars_quote WORD...: one line of shell words that bash reads back as exactly these words (as `bash -x` shows
# a command): plain words as they are, any other in single quotes, a ' inside as '\''.
tars_quote() {
  local word quoted=() q="'\\''"
  for word in "$@"; do
    if [[ -n $word && $word != *[!A-Za-z0-9_@%+=:,./-]* ]]; then
      quoted+=("$word")
    else
      quoted+=("'${word//\'/$q}'")
    fi
  done
  printf '%s\n' "${quoted[*]}"
}

# tars_run [--exec] CMD...: run one stage command (--exec: in place of this shell), or with --print-cmd print it.
tars_run() {
  local replace=0
  if [ "$1" = --exec ]; then
    replace=1
    shift
  fi
  if [ "$PRINT_CMD" = 1 ]; then
    tars_quote "$@"
  elif [ "$replace" = 1 ]; then
    exec "$@"
  else
    "$@"
  fi
}
