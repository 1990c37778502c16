# Overrides for the CPU vision-language task (quickstart --task vlm): the tiny Qwen2.5-VL-architecture policy and
# the synthetic Geometry3K-format counting task of uec_lab/demo/vlm.py. Sourced after cpu_overrides.sh; added
# after its DEMO_OVERRIDES, so these win where both set a key. docs/vlm.md compares every one with the
# Qwen2.5-VL-7B Geometry3K GPU run.
VLM_OVERRIDES=(
  data.image_key=images                                           # the converter's image column (verl's default too)
  data.max_prompt_length=256                                      # prompts are 207-211 tokens incl. 4 image tokens
  data.max_response_length=40                                     # counting twelve squares out loud takes 35 tokens
  # transformers' Qwen2.5-VL processor needs a video processor, hence torchvision, which is absent beside the CPU
  # torch: the CPU backend registers an image-only processor for the tiny model (verl imports it before loading one).
  actor_rollout_ref.model.external_lib=uec_recipe.cpu.vlm_runtime
  # verl's RLHFDataset extracts images with qwen_vl_utils, which imports torchvision: the same extraction with PIL.
  data.custom_cls.path=pkg://uec_recipe.cpu.vlm_runtime data.custom_cls.name=PILImageRLHFDataset
  data.filter_overlong_prompts=False                              # every prompt is 207 tokens; the filter would run
                                                                  # the processor over all train rows at start-up
)
