# Qwen2.5-Math-7B trained on DAPO-Math-17k, validated on AIME 2024 and MATH-500 during training (the full text
# suite is evaluated afterwards with python -m uec_recipe.eval.sample).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-Math-7B}"
TEXT_OVERRIDES=(
  actor_rollout_ref.model.path="$MODEL_PATH"
  data.train_files="$DATA_DIR/dapo_math_17k.parquet"
  "data.val_files=[$DATA_DIR/aime2024.parquet,$DATA_DIR/math500.parquet]"
  data.filter_overlong_prompts=True data.truncation=error
  # Qwen2.5-Math-7B has 4,096 position embeddings; prompt 2048 + response 2048 fits exactly, so unlike verl's
  # DAPO recipe (8k responses, max_position_embeddings raised to 32768) nothing is overridden here.
)
