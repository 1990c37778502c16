#!/usr/bin/env bash
# One-GPU smoke test of the GPU path, for the first GPU machine (docs/gpu.md, "Smoke test").
#   bash run_scripts/gpu/smoke.sh                one GPU, the gpu extra installed, no network: a few minutes
#   DRY_RUN=1 bash run_scripts/gpu/smoke.sh      composes and validates both runs' configurations (no GPU, no build)
# Builds tiny random-init policies with 64-dim attention heads (uec_lab/smoke/build.py), trains 3 UEC steps of
# the text task (with a validation pass at T = 0.5) and 2 of the vision-language task (with its pixel limits in
# data.mm_processor_kwargs) with vLLM and the paper runs' engine settings, scored by a toy reward a random policy
# meets one time in five (uec_lab/smoke/reward.py), then prints one PASS/FAIL line per check (uec_lab/smoke/check.py)
# and exits non-zero if any failed. The checks compare what the agent loop sent with what vLLM's server received
# (UEC_SERVER_LOG, uec_recipe/rollout/server_log.py).
# Knobs: SMOKE_DIR (default outputs/gpu_smoke), ATTN, PYTHON; extra arguments are hydra overrides for both runs
# (the checks assume the sampling settings below).
set -euo pipefail

# The whole script is one function read before it runs (an edit during a run cannot change what it executes).
main() {
  # The checks read the file logger's metrics; the smoke uses this machine's GPU, not a cluster (and without
  # RAY_ADDRESS launch() runs the trainer here, where ray_init.address=local below starts a Ray of its own).
  # Each run sets its own log paths below.
  LOGGER=console,file
  unset RAY_ADDRESS VERL_FILE_LOGGER_PATH TENSORBOARD_DIR UEC_AGENT_REQUEST_LOG UEC_SERVER_LOG
  source "$(dirname "${BASH_SOURCE[0]}")/geo3k_base.sh"  # common.sh, and the Geometry3K engine settings
  # The rollout servers' request log (uec_recipe/rollout/server_log.py) must reach the vLLM server actors too.
  [[ " ${FORWARDED_ENV[*]} " == *" UEC_SERVER_LOG "* ]] || FORWARDED_ENV+=(UEC_SERVER_LOG)
  SMOKE_DIR="$(realpath -m -- "${SMOKE_DIR:-$ROOT/outputs/gpu_smoke}")"
  local extra=("$@")

  # Sampling and UEC settings, passed to the runs and to the checks alike.
  local prompts=8 n=4 temperature=1.0 top_p=0.99 explore_n=8 explore_temperature=1.2 text_steps=3 vlm_steps=2
  local val_temperature=0.5  # the paper's validation temperature (common.sh, uec_trainer.yaml)
  # The VLM's own pixel limits (uec_lab/smoke/build.py VLM_SETTINGS: 56x56 .. 112x112; tests/gpu holds them equal),
  # passed as a paper run passes its limits: vLLM's processor then sizes pictures as the trainer's processor does.
  local mm_processor_kwargs='{min_pixels:3136,max_pixels:12544}'
  local mm_processor_json='{"min_pixels": 3136, "max_pixels": 12544}'
  local smoke_overrides=(
    # a Ray of its own: ray.init() without an address would attach to a Ray already running on this node
    +ray_kwargs.ray_init.address=local
    trainer.nnodes=1 trainer.n_gpus_per_node=1 actor_rollout_ref.rollout.tensor_model_parallel_size=1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.3  # a tiny policy needs little KV cache
    # vLLM starts in seconds without torch.compile and CUDA-graph capture; the paper runs keep them (geo3k_base.sh)
    actor_rollout_ref.rollout.enforce_eager=True
    actor_rollout_ref.rollout.agent.num_workers=2 reward.num_workers=2
    reward.custom_reward_function.path=pkg://uec_lab.smoke.reward reward.custom_reward_function.name=compute_score
    data.train_batch_size="$prompts" actor_rollout_ref.rollout.n="$n"
    actor_rollout_ref.rollout.temperature="$temperature" actor_rollout_ref.rollout.top_p="$top_p"
    uec.exploration.n="$explore_n" uec.exploration.temperature="$explore_temperature"
    # N0 = 8 rows, one mini-batch of 2 prompts x 4: a step's survivors (about 19 regular rows) fill it at once
    uec.n0=8 actor_rollout_ref.actor.ppo_mini_batch_size=2
    # every positive row of an update enters the replay buffer, and replay is due every step
    uec.replay.adv_threshold=0 uec.replay.frequency=1
    # a random policy mostly writes max_response_length tokens; the reference filter would drop those positives
    uec.retention.drop_overlong_positive=none
    trainer.val_before_train=False trainer.resume_mode=disable
    trainer.project_name=uec-rl-smoke trainer.logger="$LOGGER_HYDRA"
  )

  local text_model text_train text_test vlm_model vlm_train vlm_test
  if [ "${DRY_RUN:-0}" = 1 ]; then
    text_model="$SMOKE_DIR/build/text/model" text_train="$SMOKE_DIR/build/text/train.parquet"
    text_test="$SMOKE_DIR/build/text/test.parquet" vlm_model="$SMOKE_DIR/build/vlm/model"
    vlm_train="$SMOKE_DIR/build/vlm/geo3k_train.parquet" vlm_test="$SMOKE_DIR/build/vlm/geo3k_test.parquet"
  else
    "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
      || die "$PYTHON's torch sees no CUDA GPU; the smoke test needs one (DRY_RUN=1 composes without it)"
    preflight "$SMOKE_DIR"
    local built
    built="$("$PYTHON" -m uec_lab.smoke.build --out "$SMOKE_DIR/build" --print-env)" \
      || die "building the smoke policies failed (see above)"
    eval "$built"
    text_model="$SMOKE_TEXT_MODEL" text_train="$SMOKE_TEXT_TRAIN" text_test="$SMOKE_TEXT_TEST"
    vlm_model="$SMOKE_VLM_MODEL" vlm_train="$SMOKE_VLM_TRAIN" vlm_test="$SMOKE_VLM_TEST"
  fi

  local started failures=0
  started=$(date +%s)
  # The text run validates once, after its last step: verl's validation path at T = 0.5 and the recipe's
  # validation hook (val-passk metrics, uec_recipe/trainer.py).
  smoke_run text "$text_steps" "${ENGINE_OVERRIDES[@]}" "${smoke_overrides[@]}" \
    actor_rollout_ref.model.path="$text_model" data.train_files="$text_train" data.val_files="$text_test" \
    data.max_prompt_length=64 data.max_response_length=16 trainer.test_freq="$text_steps" \
    actor_rollout_ref.rollout.val_kwargs.temperature="$val_temperature" actor_rollout_ref.rollout.val_kwargs.n=1 \
    "${extra[@]+"${extra[@]}"}" || failures=$((failures + 1))
  # VLM responses get room to end early (a random policy samples its end token about once in 330 tokens, its
  # vocabulary, so about 4 in 5 responses end within 512): verl 0.9.1 fails on a batch whose M-RoPE rows all have
  # one length (docs/vlm.md, "Known verl bug"), which rows all cut at max_response_length would often form.
  smoke_run vlm "$vlm_steps" "${ENGINE_OVERRIDES[@]}" "${GEO3K_ENGINE_OVERRIDES[@]}" "${smoke_overrides[@]}" \
    actor_rollout_ref.model.path="$vlm_model" data.train_files="$vlm_train" data.val_files="$vlm_test" \
    data.image_key=images data.max_prompt_length=256 data.max_response_length=512 trainer.test_freq=-1 \
    "++data.mm_processor_kwargs=$mm_processor_kwargs" "${extra[@]+"${extra[@]}"}" || failures=$((failures + 1))
  [ "${DRY_RUN:-0}" = 1 ] && return 0

  "$PYTHON" -m uec_lab.smoke.check --run text="$SMOKE_DIR/text" --run vlm="$SMOKE_DIR/vlm" \
    --steps "$text_steps" "$vlm_steps" --prompts "$prompts" --n "$n" --temperature "$temperature" --top-p "$top_p" \
    --exploration-n "$explore_n" --exploration-temperature "$explore_temperature" \
    --validate text --val-temperature "$val_temperature" --images vlm --mm-processor-kwargs "$mm_processor_json" \
    || failures=$((failures + 1))
  local elapsed=$(($(date +%s) - started))
  echo "[smoke] both runs and the checks took $((elapsed / 60))m$((elapsed % 60))s (budget 8m); outputs in $SMOKE_DIR"
  if [ "$failures" -gt 0 ]; then
    echo "[smoke] FAILED" >&2
    return 1
  fi
  echo "[smoke] all checks passed"
}

# smoke_run LABEL STEPS [overrides...]: one short training into SMOKE_DIR/LABEL, with its own metrics file,
# request logs (agent loop and rollout server) and checkpoints; prints a PASS/FAIL line for the training itself.
smoke_run() {
  local label="$1" steps="$2"
  shift 2
  local run_dir="$SMOKE_DIR/$label"
  local overrides=(algo=uec "$@" trainer.total_training_steps="$steps" trainer.save_freq="$steps"
    trainer.experiment_name="smoke-$label" trainer.default_local_dir="$run_dir/checkpoints")
  export VERL_FILE_LOGGER_PATH="$run_dir/metrics.jsonl" UEC_AGENT_REQUEST_LOG="$run_dir/requests.jsonl"
  export UEC_SERVER_LOG="$run_dir/server"
  if [ "${DRY_RUN:-0}" = 1 ]; then
    launch "$run_dir" "${overrides[@]}"
    return
  fi
  rm -rf -- "$run_dir"
  mkdir -p "$run_dir" "$UEC_SERVER_LOG"
  local started status=0
  started=$(date +%s)
  echo "[smoke] training $label for $steps steps (log: $run_dir/train.log)"
  launch "$run_dir" "${overrides[@]}" 2>&1 | tee "$run_dir/train.log" || status=$?
  local elapsed=$(($(date +%s) - started))
  if [ "$status" -eq 0 ]; then
    echo "PASS [$label] training: $steps steps finished in ${elapsed}s"
  else
    echo "FAIL [$label] training: exited with status $status after ${elapsed}s (log: $run_dir/train.log)"
    return 1
  fi
}

main "$@"; exit
