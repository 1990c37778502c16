# Qwen2.5-VL-7B-Instruct trained and validated on Geometry3K (train 2,101 / test 601).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
GEO3K_OVERRIDES=(
  actor_rollout_ref.model.path="$MODEL_PATH"
  data.train_files="$DATA_DIR/geo3k_train.parquet" data.val_files="$DATA_DIR/geo3k_test.parquet"
  data.image_key=images data.filter_overlong_prompts=True data.truncation=error
  # image pixel limits of the paper's setup (§4): 512x512 .. 2048x2048 pixels
  '+data.mm_processor_kwargs={min_pixels:262144,max_pixels:4194304}'
  actor_rollout_ref.rollout.enable_chunked_prefill=False  # verl's Qwen2.5-VL example setting
)
