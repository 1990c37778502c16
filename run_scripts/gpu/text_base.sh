# Qwen2.5-Math-7B trained on DAPO-Math-17k, validated on AIME 2024 and MATH-500 during training (the full text
# suite is evaluated afterwards with python -m uec_recipe.eval.sample). The task's settings: config/task/math_text.yaml.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SHARED_DATA_FILES=("$DATA_DIR/dapo_math_17k.parquet" "$DATA_DIR/aime2024.parquet" "$DATA_DIR/math500.parquet")
TASK_OVERRIDES=(
  task=math_text
  data.train_files="$DATA_DIR/dapo_math_17k.parquet"
  "data.val_files=[$DATA_DIR/aime2024.parquet,$DATA_DIR/math500.parquet]"
)
if [ -n "${MODEL_PATH:-}" ]; then TASK_OVERRIDES+=(actor_rollout_ref.model.path="$MODEL_PATH"); fi
