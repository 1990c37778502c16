# Qwen2.5-VL-7B-Instruct trained and validated on Geometry3K (train 2,101 / test 601). The task's settings:
# config/task/geo3k.yaml; the memory settings of verl's own Qwen2.5-VL-7B example: config/gpu_engine/fsdp_vllm_vl.yaml.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# Selected after ENGINE_OVERRIDES (the smoke test's VLM run does the same): the last gpu_engine selection wins.
GEO3K_ENGINE_OVERRIDES=(gpu_engine=fsdp_vllm_vl)
SHARED_DATA_FILES=("$DATA_DIR/geo3k_train.parquet" "$DATA_DIR/geo3k_test.parquet")
TASK_OVERRIDES=(
  task=geo3k "${GEO3K_ENGINE_OVERRIDES[@]}"
  data.train_files="$DATA_DIR/geo3k_train.parquet" data.val_files="$DATA_DIR/geo3k_test.parquet"
)
if [ -n "${MODEL_PATH:-}" ]; then TASK_OVERRIDES+=(actor_rollout_ref.model.path="$MODEL_PATH"); fi
