# Demo values for the embedded digit-sum task (uec_lab/demo/build.py), sourced by the CPU quickstart and by
# run_scripts/stage_timing.sh. These are DEMO settings, sized so that every UEC stage acts within a 20-step run on
# 2 cores; the paper's values are in uec_recipe/config/uec_trainer.yaml. Needs ROOT (the repository) set.
DEMO_OVERRIDES=(
  data.train_batch_size=16 actor_rollout_ref.rollout.n=4         # N0 = 64 rows (paper: 512 x 5)
  data.max_prompt_length=64 data.max_response_length=16
  actor_rollout_ref.actor.ppo_mini_batch_size=16 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32 actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32
  actor_rollout_ref.actor.optim.lr=1e-4                            # paper 1e-6 for a 7B model; 5e-4 collapses the demo policy
  actor_rollout_ref.rollout.val_kwargs.n=4                       # 4 samples per validation prompt: pass@1,2,4
  uec.exploration.n=8                                             # G' (paper 20)
  uec.replay.adv_threshold=0.5 uec.replay.frequency=2             # A0, f_replay (paper 1.0, 5)
  reward.custom_reward_function.path="$ROOT/uec_recipe/reward.py" reward.custom_reward_function.name=compute_score
  trainer.logger='["file"]' trainer.save_freq=-1 trainer.val_before_train=True
)
