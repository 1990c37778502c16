# The reproduction study's settings (run_scripts/reproduce_cpu.sh): the CPU and demo overrides, then what the study
# changes. Needs ROOT (the repository) and cpu_overrides.sh + demo_overrides.sh sourced first.
# Sized for GRPO to learn on the demo task within the study's step budget (how much it does, with its interval, is
# in docs/results.md); every UEC-RL knob is the paper's (arXiv 2604.14646 §3), not the quickstart's demo values.
STUDY_OVERRIDES=(
  "${CPU_OVERRIDES[@]}" "${DEMO_OVERRIDES[@]}"
  data.train_batch_size=32 actor_rollout_ref.rollout.n=5          # P x G = N0 = 160 rows (paper 512 x 5)
  actor_rollout_ref.actor.ppo_mini_batch_size=32                  # one optimizer step per update batch of N0 rows
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=160
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=160 actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=160
  actor_rollout_ref.actor.optim.lr=1e-4                           # paper 1e-6 for a 7B model; at 2e-4 GRPO drifted (docs/results.md)
  uec.exploration.n=20 uec.replay.adv_threshold=1.0 uec.replay.frequency=5   # G', A0, f_replay: the paper's values
  trainer.logger='["file"]'
)
