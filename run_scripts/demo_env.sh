# load_demo_env PYTHON MODULE: build (or reuse) a CPU demo with `PYTHON -m MODULE --print-env` and set DEMO_MODEL,
# DEMO_TRAIN, DEMO_TEST and DEMO_REPORT from the lines it prints. Sourced by the CPU launchers.
# The output is captured before anything reads it, so a failed build stops the launcher here with the builder's
# exit status; each line is split at its first "=" rather than eval'ed, so paths with spaces arrive whole.
load_demo_env() {
  local python="$1" module="$2" output key value
  output="$("$python" -m "$module" --print-env)" || {
    echo "error: building the demo failed ($python -m $module --print-env; its messages are above)" >&2
    exit 1
  }
  DEMO_MODEL="" DEMO_TRAIN="" DEMO_TEST="" DEMO_REPORT=""
  while IFS= read -r line; do
    key="${line%%=*}" value="${line#*=}"
    case "$key" in
      DEMO_MODEL | DEMO_TRAIN | DEMO_TEST | DEMO_REPORT) printf -v "$key" '%s' "$value" ;;
    esac
  done <<<"$output"
  for key in DEMO_MODEL DEMO_TRAIN DEMO_TEST DEMO_REPORT; do
    if [ -z "${!key}" ]; then
      echo "error: $python -m $module --print-env printed no $key line; it printed: $output" >&2
      exit 1
    fi
  done
  export DEMO_MODEL DEMO_TRAIN DEMO_TEST DEMO_REPORT
}
